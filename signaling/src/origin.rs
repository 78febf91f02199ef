//! The browser `Origin` check on WebSocket upgrades (see [`crate::config::OriginPolicy`]).

use crate::config::OriginPolicy;

/// Decides whether a WebSocket upgrade with this `Origin` (and `Host`) may proceed.
pub(crate) fn allowed(policy: &OriginPolicy, origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        // Not a browser (or a browser that does not send Origin on this request).
        return true;
    };
    match policy {
        OriginPolicy::List(list) => list.iter().any(|allowed| {
            allowed == "*" || allowed.trim_end_matches('/').eq_ignore_ascii_case(origin)
        }),
        OriginPolicy::SameHost => {
            let Some(authority) = authority(origin) else {
                return false; // "null", garbage
            };
            host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) || is_loopback(authority)
        }
    }
}

/// `https://host:port` → `host:port`.
fn authority(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

fn is_loopback(authority: &str) -> bool {
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "::1"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_origin_is_allowed() {
        assert!(allowed(&OriginPolicy::SameHost, None, None));
        assert!(allowed(&OriginPolicy::List(vec![]), None, Some("x")));
    }

    #[test]
    fn same_host_policy() {
        let p = OriginPolicy::SameHost;
        let host = Some("meet.example.com");
        assert!(allowed(&p, Some("https://meet.example.com"), host));
        assert!(allowed(&p, Some("https://MEET.example.com"), host));
        assert!(!allowed(&p, Some("https://evil.example"), host));
        assert!(!allowed(&p, Some("https://meet.example.com:8443"), host));
        assert!(!allowed(&p, Some("null"), host));
        assert!(!allowed(&p, Some("file://"), host));
        assert!(!allowed(
            &p,
            Some("https://meet.example.com.evil.example"),
            host
        ));
        assert!(!allowed(&p, Some("https://evil.example"), None));
        // Loopback pages are the developer's own.
        assert!(allowed(&p, Some("http://localhost:3000"), host));
        assert!(allowed(
            &p,
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080")
        ));
        assert!(allowed(&p, Some("http://[::1]:8080"), host));
        assert!(!allowed(&p, Some("http://localhost.evil.example"), host));
    }

    #[test]
    fn list_policy() {
        let p = OriginPolicy::List(vec!["https://meet.example.com/".into()]);
        assert!(allowed(
            &p,
            Some("https://meet.example.com"),
            Some("internal:8080")
        ));
        assert!(!allowed(&p, Some("http://meet.example.com"), None));
        assert!(!allowed(
            &p,
            Some("http://localhost:8080"),
            Some("localhost:8080")
        ));
        let any = OriginPolicy::List(vec!["*".into()]);
        assert!(allowed(&any, Some("https://anything.example"), None));
    }
}
