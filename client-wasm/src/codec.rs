//! Codec-aware clear prefixes: the bytes a packetizer and the SFU may read stay in the clear
//! (authenticated as SFrame metadata), the rest is encrypted.

/// The codec of a frame, which decides its clear prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// VP8: 10 bytes on a keyframe (low bit of the first byte 0), 3 otherwise.
    Vp8,
    /// Opus: the 1-byte TOC.
    Opus,
    /// Anything else: no clear prefix.
    Other,
}

impl Codec {
    /// Parses the JS names `"vp8"`, `"opus"`, `"other"` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Codec> {
        match name.to_ascii_lowercase().as_str() {
            "vp8" => Some(Codec::Vp8),
            "opus" => Some(Codec::Opus),
            "other" => Some(Codec::Other),
            _ => None,
        }
    }

    /// Length of the clear prefix of a frame whose first bytes are `data`.
    ///
    /// The same rule serves sender and receiver: the prefix is the frame's own first bytes, so
    /// the receiver reads them from the clear part of the encrypted frame. An empty frame
    /// yields the codec's minimum (VP8: 3), which the caller then finds too long.
    pub fn prefix_len(self, data: &[u8]) -> usize {
        match self {
            Codec::Vp8 => match data.first() {
                Some(b) if b & 1 == 0 => 10,
                _ => 3,
            },
            Codec::Opus => 1,
            Codec::Other => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_lengths() {
        assert_eq!(Codec::Vp8.prefix_len(&[0x10, 0, 0]), 10);
        assert_eq!(Codec::Vp8.prefix_len(&[0x11, 0, 0]), 3);
        assert_eq!(Codec::Vp8.prefix_len(&[]), 3);
        assert_eq!(Codec::Opus.prefix_len(&[0xfc]), 1);
        assert_eq!(Codec::Other.prefix_len(&[1, 2]), 0);
        assert_eq!(Codec::from_name("VP8"), Some(Codec::Vp8));
        assert_eq!(Codec::from_name("h264"), None);
    }
}
