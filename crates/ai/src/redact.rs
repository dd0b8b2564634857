//! A target's key kept out of everything its shim is given.
//!
//! The host puts a target's key into the provider request itself, so a
//! shim never holds one (see `provider` in wit/plugin.wit). A provider may
//! still quote the key back: OpenAI's answer to a rejected key names it.
//! So every provider body is redacted before the shim sees it: each
//! occurrence of the key becomes `[redacted]`. A streamed body is redacted
//! across its pieces: bytes at a piece's end that could begin the key are
//! held back until the next piece shows whether they do.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use memchr::memmem;

/// What a key is replaced with.
const REDACTED: &[u8] = b"[redacted]";

/// Keys shorter than this are not searched for: replacing every
/// occurrence of a few common bytes would mangle bodies and hide nothing.
pub const MIN_KEY_LEN: usize = 4;

/// `key` if it is long enough to be searched for.
fn searched(key: Option<&str>) -> Option<&[u8]> {
    key.map(str::as_bytes).filter(|k| k.len() >= MIN_KEY_LEN)
}

/// `body` with every occurrence of `key` replaced; borrowed when there is
/// none.
pub fn redact<'a>(body: &'a [u8], key: Option<&str>) -> Cow<'a, [u8]> {
    let Some(key) = searched(key) else {
        return Cow::Borrowed(body);
    };
    if memmem::find(body, key).is_none() {
        return Cow::Borrowed(body);
    }
    Cow::Owned(replace_all(body, key))
}

fn replace_all(body: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = memmem::find(rest, key) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(REDACTED);
        rest = &rest[at + key.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The length of the longest end of `data` that is a proper beginning of
/// `key`: bytes that may be the start of a key split across pieces.
fn partial_key_at_end(data: &[u8], key: &[u8]) -> usize {
    let window = data.len().min(key.len() - 1);
    let tail = &data[data.len() - window..];
    // Candidates start where the key's first byte is; the earliest is
    // the longest.
    memchr::memchr_iter(key[0], tail)
        .find(|&at| key.starts_with(&tail[at..]))
        .map_or(0, |at| window - at)
}

/// Redacts a streamed body piece by piece.
pub struct StreamRedactor {
    key: Option<Box<[u8]>>,
    held: BytesMut,
}

impl StreamRedactor {
    /// A redactor for `key`.
    pub fn new(key: Option<&str>) -> Self {
        StreamRedactor {
            key: searched(key).map(Box::from),
            held: BytesMut::new(),
        }
    }

    /// The next piece, redacted, less any bytes at its end that may begin
    /// the key (they come with the next piece or with [`Self::finish`]).
    pub fn push(&mut self, piece: Bytes) -> Bytes {
        let Some(key) = self.key.as_deref() else {
            return piece;
        };
        if self.held.is_empty() && memmem::find(&piece, key).is_none() && partial_key_at_end(&piece, key) == 0 {
            return piece;
        }
        self.held.extend_from_slice(&piece);
        let mut out = BytesMut::from(&replace_all(&self.held, key)[..]);
        let keep = partial_key_at_end(&out, key);
        self.held = out.split_off(out.len() - keep);
        out.freeze()
    }

    /// What was held back, once the body has ended.
    pub fn finish(&mut self) -> Bytes {
        std::mem::take(&mut self.held).freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-secret-0123";

    #[test]
    fn every_occurrence_is_replaced_and_a_clean_body_is_borrowed() {
        let body = format!("{{\"error\": \"bad key {KEY}, {KEY}\"}}");
        assert_eq!(
            &*redact(body.as_bytes(), Some(KEY)),
            b"{\"error\": \"bad key [redacted], [redacted]\"}"
        );
        assert!(matches!(redact(b"nothing here", Some(KEY)), Cow::Borrowed(_)));
        assert!(
            matches!(redact(b"abc abc", Some("abc")), Cow::Borrowed(_)),
            "too short a key"
        );
        assert!(matches!(redact(b"abc", None), Cow::Borrowed(_)));
    }

    #[test]
    fn a_key_split_anywhere_across_pieces_is_redacted() {
        let body = format!("data: {{\"x\": \"{KEY}\"}}\n\ndata: sk-se done {KEY}");
        let want = String::from_utf8(redact(body.as_bytes(), Some(KEY)).into_owned()).unwrap();
        assert!(!want.contains(KEY));
        for first in 0..=body.len() {
            for second in first..=body.len() {
                let mut redactor = StreamRedactor::new(Some(KEY));
                let mut out = Vec::new();
                for piece in [&body[..first], &body[first..second], &body[second..]] {
                    out.extend_from_slice(&redactor.push(Bytes::copy_from_slice(piece.as_bytes())));
                }
                out.extend_from_slice(&redactor.finish());
                assert_eq!(String::from_utf8(out).unwrap(), want, "split at {first} and {second}");
            }
        }
    }

    #[test]
    fn only_a_possible_beginning_of_the_key_is_held_back() {
        let mut redactor = StreamRedactor::new(Some(KEY));
        assert_eq!(redactor.push(Bytes::from_static(b"plain")), "plain");
        assert_eq!(redactor.push(Bytes::from_static(b"ends sk-s")), "ends ");
        assert_eq!(redactor.push(Bytes::from_static(b"ky")), "sk-sky");
        assert_eq!(redactor.finish(), "");
        let mut redactor = StreamRedactor::new(Some(KEY));
        assert_eq!(redactor.push(Bytes::from_static(b"tail s")), "tail ");
        assert_eq!(redactor.finish(), "s");
    }
}
