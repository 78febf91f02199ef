//! The host part of a client's `Host` header, for URLs the server makes from it (TURN
//! URLs in `welcome`, the HTTPS redirect). The header is the client's to choose and
//! ends up in a URL, so only a plain host name or IP passes.

/// `example.com` of `example.com:8080`, `[::1]` of `[::1]:8080`; `None` for anything
/// that is not a plain host name or IP.
pub(crate) fn host_name(host: &str) -> Option<&str> {
    if host.starts_with('[') {
        let end = host.find(']')?;
        let (bracketed, rest) = host.split_at(end + 1);
        if !(rest.is_empty() || rest.starts_with(':')) {
            return None;
        }
        let inner = &bracketed[1..end];
        let ok = !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        return ok.then_some(bracketed);
    }
    let name = host.split_once(':').map_or(host, |(name, _)| name);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    ok.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_hosts_pass_and_anything_else_does_not() {
        assert_eq!(host_name("meet.example.com"), Some("meet.example.com"));
        assert_eq!(host_name("meet.example.com:8443"), Some("meet.example.com"));
        assert_eq!(host_name("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_name("192.168.1.4:8080"), Some("192.168.1.4"));
        for hostile in [
            "",
            "a b",
            "x@y",
            "evil/?",
            "[::1]x",
            "[zz]",
            "[]",
            "é.example",
        ] {
            assert_eq!(host_name(hostile), None, "{hostile:?}");
        }
    }
}
