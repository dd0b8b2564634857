//! Decoders for providers' streamed bodies, fed bytes split anywhere.
//!
//! Both hold back an incomplete line until its end arrives, so a line
//! split inside a UTF-8 character is decoded whole. Lines end in `\n`,
//! `\r\n` or `\r`, also when the `\r` and `\n` arrive in different pieces.

/// Splits bytes into lines.
#[derive(Debug, Default)]
pub struct LineDecoder {
    pending: Vec<u8>,
    /// The last piece ended in `\r`: a `\n` starting the next one belongs
    /// to that line end.
    after_cr: bool,
}

impl LineDecoder {
    /// A decoder with nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; call `line` with each complete line (without its end).
    pub fn push(&mut self, mut bytes: &[u8], mut line: impl FnMut(&[u8])) {
        // An empty piece (a transport may deliver one) must not end the
        // wait for the `\n` of a `\r\n` split across pieces.
        if bytes.is_empty() {
            return;
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(at) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            if self.pending.is_empty() {
                line(&bytes[..at]);
            } else {
                self.pending.extend_from_slice(&bytes[..at]);
                line(&self.pending);
                self.pending.clear();
            }
            let cr = bytes[at] == b'\r';
            bytes = &bytes[at + 1..];
            if cr {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.pending.extend_from_slice(bytes);
    }

    /// The body ended: the last line if it had no line end.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.after_cr = false;
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }

    /// Whether bytes of an unfinished line are held.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Splits bytes into server-sent events (the WHATWG event-stream format:
/// `field: value` lines, events ended by a blank line, `:` comments).
///
/// A line that is not UTF-8 breaks the stream: the events completed before
/// it are still returned, then every call returns the error — wherever
/// the pieces were cut.
#[derive(Debug, Default)]
pub struct SseDecoder {
    lines: LineDecoder,
    event: Option<String>,
    data: Option<String>,
    failed: Option<String>,
}

impl SseDecoder {
    /// A decoder with nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; returns the events they completed. An error once a
    /// line was not UTF-8 (after the events completed before it).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
        let mut events = Vec::new();
        let mut lines = std::mem::take(&mut self.lines);
        lines.push(bytes, |line| self.line(line, &mut events));
        self.lines = lines;
        self.check(events)
    }

    /// The body ended: an event still open is complete now (servers may
    /// omit the last blank line).
    pub fn finish(&mut self) -> Result<Vec<SseEvent>, String> {
        let mut events = Vec::new();
        if let Some(line) = self.lines.finish() {
            self.line(&line, &mut events);
        }
        if self.failed.is_none() {
            self.dispatch(&mut events);
        }
        self.check(events)
    }

    /// `events`, then the error on the next call if the stream broke.
    fn check(&self, events: Vec<SseEvent>) -> Result<Vec<SseEvent>, String> {
        match &self.failed {
            Some(error) if events.is_empty() => Err(error.clone()),
            _ => Ok(events),
        }
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<SseEvent>) {
        if self.failed.is_some() {
            return;
        }
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            // The event this line belongs to is lost with it.
            self.event = None;
            self.data = None;
            self.failed = Some("the event stream is not valid UTF-8".into());
            return;
        };
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            // `id`, `retry` and unknown fields carry nothing a shim needs.
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if let Some(data) = self.data.take() {
            events.push(SseEvent { event, data });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_split_every_way(body: &[u8]) -> Vec<SseEvent> {
        let mut whole = SseDecoder::new();
        let mut expected = whole.push(body).unwrap();
        expected.extend(whole.finish().unwrap());
        for size in 1..body.len() {
            let mut decoder = SseDecoder::new();
            let mut got = Vec::new();
            for piece in body.chunks(size) {
                got.extend(decoder.push(piece).unwrap());
            }
            got.extend(decoder.finish().unwrap());
            assert_eq!(got, expected, "pieces of {size} bytes");
        }
        expected
    }

    #[test]
    fn events_survive_any_split_and_any_line_end() {
        let lf = "event: message_start\ndata: {\"a\":\"é€\"}\n\n: keep-alive\n\ndata: one\ndata: two\n\nid: 3\ndata:no-space\n\n";
        let expected = vec![
            SseEvent {
                event: Some("message_start".into()),
                data: "{\"a\":\"é€\"}".into(),
            },
            SseEvent {
                event: None,
                data: "one\ntwo".into(),
            },
            SseEvent {
                event: None,
                data: "no-space".into(),
            },
        ];
        assert_eq!(events_split_every_way(lf.as_bytes()), expected);
        assert_eq!(events_split_every_way(lf.replace('\n', "\r\n").as_bytes()), expected);
        assert_eq!(events_split_every_way(lf.replace('\n', "\r").as_bytes()), expected);
    }

    #[test]
    fn a_last_event_without_blank_line_is_kept() {
        let events = events_split_every_way(b"data: [DONE]");
        assert_eq!(
            events,
            vec![SseEvent {
                event: None,
                data: "[DONE]".into()
            }]
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut decoder = SseDecoder::new();
        assert!(decoder.push(b"data: \xff\xfe\n\n").is_err());
    }

    #[test]
    fn events_before_invalid_utf8_come_out_then_the_error() {
        let body = b"data: first\n\ndata: \xff\n\ndata: after\n\n";
        let mut decoder = SseDecoder::new();
        let events = decoder.push(body).unwrap();
        assert_eq!(events.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["first"]);
        assert!(decoder.push(b"data: more\n\n").is_err());
        assert!(decoder.finish().is_err());
    }

    #[test]
    fn an_empty_piece_between_cr_and_lf_adds_no_line() {
        let mut decoder = LineDecoder::new();
        let mut lines = Vec::new();
        for piece in [&b"a\r"[..], b"", b"\nb"] {
            decoder.push(piece, |l| lines.push(l.to_vec()));
        }
        lines.extend(decoder.finish());
        assert_eq!(lines, [b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn lines_split_anywhere() {
        let body = "{\"a\":1}\r\n{\"b\":\"ü\"}\n{\"c\":3}";
        for size in 1..body.len() {
            let mut decoder = LineDecoder::new();
            let mut lines = Vec::new();
            for piece in body.as_bytes().chunks(size) {
                decoder.push(piece, |l| lines.push(String::from_utf8(l.to_vec()).unwrap()));
            }
            lines.extend(decoder.finish().map(|l| String::from_utf8(l).unwrap()));
            assert_eq!(lines, ["{\"a\":1}", "{\"b\":\"ü\"}", "{\"c\":3}"], "pieces of {size}");
        }
    }
}
