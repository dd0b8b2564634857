//! A request's place in a W3C trace (Trace Context, `traceparent`): read
//! from the client's header or started afresh, and sent on with each
//! attempt upstream.

/// A request's place in a W3C trace: the trace, this request's span, and
/// the caller's span if the client sent a `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace.
    pub trace_id: [u8; 16],
    /// The gateway's span for this request.
    pub span_id: [u8; 8],
    /// The client's span, from its `traceparent`.
    pub parent: Option<[u8; 8]>,
    /// Whether the trace is sampled (recorded).
    pub sampled: bool,
}

impl TraceContext {
    /// Continue the trace of a valid `traceparent` header, or start one.
    pub fn new(traceparent: Option<&http::HeaderValue>) -> Self {
        let span_id = new_span_id();
        match traceparent.and_then(|v| parse_traceparent(v.as_bytes())) {
            Some((trace_id, parent, sampled)) => TraceContext {
                trace_id,
                span_id,
                parent: Some(parent),
                sampled,
            },
            None => TraceContext {
                trace_id: loop {
                    let id = fastrand::u128(..).to_be_bytes();
                    if id != [0; 16] {
                        break id;
                    }
                },
                span_id,
                parent: None,
                sampled: true,
            },
        }
    }

    /// The trace id, hex.
    pub fn trace_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The `traceparent` naming `span_id` as the parent, for a request
    /// the gateway sends on. Written into a fixed buffer: one per attempt,
    /// on every request.
    pub fn traceparent(&self, span_id: [u8; 8]) -> http::HeaderValue {
        // `00-` 32 hex `-` 16 hex `-` 2 hex.
        let mut text = [0u8; 55];
        text[..3].copy_from_slice(b"00-");
        write_hex(&self.trace_id, &mut text[3..35]);
        text[35] = b'-';
        write_hex(&span_id, &mut text[36..52]);
        text[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        http::HeaderValue::from_bytes(&text).unwrap_or_else(|_| http::HeaderValue::from_static(""))
    }
}

/// `bytes` as lowercase hex into `out` (twice as long).
fn write_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

/// A new non-zero span id.
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

/// `00-TRACE-PARENT-FLAGS` (W3C Trace Context, version 00; later versions
/// are read by their first four fields). Invalid: all-zero ids, version
/// `ff`, anything not lowercase hex of the right length.
pub fn parse_traceparent(value: &[u8]) -> Option<([u8; 16], [u8; 8], bool)> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut fields = text.split('-');
    let (version, trace, parent, flags) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    let lower_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !lower_hex(version, 2) || version == "ff" || (version == "00" && fields.next().is_some()) {
        return None;
    }
    if !lower_hex(trace, 32) || !lower_hex(parent, 16) || !lower_hex(flags, 2) {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut parent_id = [0u8; 8];
    hex::decode_to_slice(trace, &mut trace_id).ok()?;
    hex::decode_to_slice(parent, &mut parent_id).ok()?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace_id, parent_id, flags & 1 == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued_and_an_invalid_one_starts_a_trace() {
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::new(Some(&http::HeaderValue::from_static(given)));
        assert_eq!(context.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.parent, Some(hex_array("00f067aa0ba902b7")));
        assert!(context.sampled);
        assert_ne!(context.span_id, [0; 8]);
        let sent = context.traceparent([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(sent, "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01");

        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
            "",
        ] {
            let context = TraceContext::new(Some(&http::HeaderValue::from_static(bad)));
            assert_eq!(context.parent, None, "{bad}");
            assert_ne!(context.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
            assert!(context.sampled);
        }
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        let context = TraceContext::new(Some(&http::HeaderValue::from_static(later)));
        assert_eq!(
            context.parent,
            Some(hex_array("00f067aa0ba902b7")),
            "a later version is read"
        );
        assert!(!context.sampled);
    }

    fn hex_array(text: &str) -> [u8; 8] {
        let mut out = [0u8; 8];
        hex::decode_to_slice(text, &mut out).unwrap();
        out
    }
}
