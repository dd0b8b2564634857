//! What the providers share: faults, the deterministic reply, token counts.

use http::StatusCode;
use serde_json::{Value, json};

use crate::{Answer, Req, json_response};

/// Faults requested for one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// `429[:N]`: answer 429 with `retry-after: N`.
    pub rate_limit: Option<u64>,
    /// `500`: answer 500.
    pub server_error: bool,
    /// `slow:MS`: wait before the first byte.
    pub slow_ms: Option<u64>,
    /// `cut:N`: close the stream after N events.
    pub cut: Option<usize>,
    /// `malformed`: one malformed event mid-stream.
    pub malformed: bool,
    /// `split`: write the stream in 1–7 byte pieces.
    pub split: bool,
    /// `crlf`: SSE lines end with `\r\n`.
    pub crlf: bool,
    /// `quote-key`: `{key}` in the request body is replaced with the key
    /// the request carried, so the answer quotes it back.
    pub quote_key: bool,
    /// `hold`: wait before answering until [`crate::Emulator::release`].
    pub hold: bool,
}

impl Faults {
    /// Parse a comma-separated fault list; unknown items are ignored.
    pub fn parse(spec: &str) -> Faults {
        let mut faults = Faults::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, arg) = item.split_once(':').unwrap_or((item, ""));
            let arg = arg.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "429" => faults.rate_limit = Some(arg.parse().unwrap_or(1)),
                "500" => faults.server_error = true,
                "slow" => faults.slow_ms = arg.parse().ok(),
                "cut" => faults.cut = arg.parse().ok(),
                "malformed" => faults.malformed = true,
                "split" => faults.split = true,
                "crlf" => faults.crlf = true,
                "quote-key" => faults.quote_key = true,
                "hold" => faults.hold = true,
                _ => {}
            }
        }
        faults
    }

    fn merge(&mut self, other: Faults) {
        self.rate_limit = self.rate_limit.or(other.rate_limit);
        self.server_error |= other.server_error;
        self.slow_ms = self.slow_ms.or(other.slow_ms);
        self.cut = self.cut.or(other.cut);
        self.malformed |= other.malformed;
        self.split |= other.split;
        self.crlf |= other.crlf;
        self.quote_key |= other.quote_key;
        self.hold |= other.hold;
    }

    /// Whether the body must be sent through the stream machinery.
    pub(crate) fn shapes_body(&self) -> bool {
        self.cut.is_some() || self.malformed || self.split
    }
}

/// The faults of a request: its header, then the marker in the last user message.
pub(crate) fn faults_for(req: &Req, last_user: &str) -> Faults {
    let mut faults = req.header("x-emulator-fault").map(Faults::parse).unwrap_or_default();
    if let Some(marker) = fault_marker(last_user) {
        faults.merge(Faults::parse(marker));
    }
    faults
}

fn fault_marker(text: &str) -> Option<&str> {
    let start = text.find("[fault:")?;
    let rest = &text[start + 7..];
    let end = rest.find(']')?;
    Some(&rest[..end])
}

/// The text without its `[fault:...]` marker.
pub(crate) fn strip_marker(text: &str) -> String {
    match text.find("[fault:") {
        Some(start) => match text[start..].find(']') {
            Some(end) => {
                let joined = format!("{}{}", &text[..start], &text[start + end + 1..]);
                joined.split_whitespace().collect::<Vec<_>>().join(" ")
            }
            None => text.to_string(),
        },
        None => text.to_string(),
    }
}

/// A chat request reduced to what the reply depends on.
#[derive(Default, Debug)]
pub(crate) struct Chat {
    /// Every text in the prompt (system, messages), for prompt tokens.
    pub texts: Vec<String>,
    pub last_user: String,
    /// Declared tool names.
    pub tools: Vec<String>,
    pub max_tokens: Option<u64>,
    pub stop: Vec<String>,
}

impl Chat {
    /// Messages with `role` and `content`, and tools declared as
    /// `{"function": {"name": ...}}`: the shape OpenAI and Ollama share.
    pub fn read_openai_style<'a>(&mut self, messages: impl IntoIterator<Item = &'a Value>, body: &Value) {
        for m in messages {
            let text = m.get("content").map(content_text).unwrap_or_default();
            if m.get("role").and_then(Value::as_str) == Some("user") {
                self.last_user = text.clone();
            }
            self.texts.push(text);
        }
        if let Some(tools) = body.get("tools").and_then(Value::as_array) {
            self.tools = tools
                .iter()
                .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Finish {
    Stop,
    Length,
    StopSequence(String),
    Tool,
}

#[derive(Debug)]
pub(crate) struct Reply {
    /// The reply text in word pieces (" word" after the first).
    pub pieces: Vec<String>,
    /// A tool call: name and arguments object.
    pub tool: Option<(String, Value)>,
    pub finish: Finish,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Reply {
    pub fn text(&self) -> String {
        self.pieces.concat()
    }

    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

pub(crate) fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The deterministic reply to a chat.
pub(crate) fn reply(chat: &Chat) -> Reply {
    let prompt_tokens = chat.texts.iter().map(|t| words(t)).sum();
    let last = strip_marker(&chat.last_user);
    for name in &chat.tools {
        let pattern = format!("call {name}");
        if let Some(at) = last.find(&pattern) {
            let after = &last[at + pattern.len()..];
            if after.is_empty() || after.starts_with(char::is_whitespace) {
                let query = after.trim().to_string();
                let args = json!({ "query": query });
                let completion_tokens = 1 + words(&query);
                return Reply {
                    pieces: Vec::new(),
                    tool: Some((name.clone(), args)),
                    finish: Finish::Tool,
                    prompt_tokens,
                    completion_tokens,
                };
            }
        }
    }
    let mut text = format!("Echo: {last}");
    let mut finish = Finish::Stop;
    for stop in chat.stop.iter().filter(|s| !s.is_empty()) {
        if let Some(at) = text.find(stop.as_str()) {
            text.truncate(at);
            finish = Finish::StopSequence(stop.clone());
        }
    }
    let mut all: Vec<&str> = text.split_whitespace().collect();
    if let Some(max) = chat.max_tokens
        && (all.len() as u64) > max
    {
        all.truncate(max as usize);
        finish = Finish::Length;
    }
    let pieces: Vec<String> = all
        .iter()
        .enumerate()
        .map(|(i, w)| if i == 0 { w.to_string() } else { format!(" {w}") })
        .collect();
    Reply {
        completion_tokens: pieces.len() as u64,
        pieces,
        tool: None,
        finish,
        prompt_tokens,
    }
}

/// A JSON body answer: plain unless a fault reshapes it.
pub(crate) fn body_answer(faults: &Faults, status: StatusCode, value: &Value, malformed: &str) -> Answer {
    if faults.shapes_body() {
        Answer::Events {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            events: vec![value.to_string()],
            malformed: malformed.to_string(),
            sse: false,
        }
    } else {
        Answer::Done(json_response(status, value))
    }
}

/// An SSE `data:` event.
pub(crate) fn sse_data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// An SSE event with a name.
pub(crate) fn sse_event(name: &str, value: &Value) -> String {
    format!("event: {name}\ndata: {value}\n\n")
}

/// Split a string into `n` roughly equal pieces on char boundaries.
pub(crate) fn split_pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let size = chars.len().div_ceil(n.max(1)).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The current time as RFC 3339 with nanoseconds, UTC.
pub(crate) fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_nanos()
    )
}

/// A small deterministic PRNG (xorshift64*).
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Text of a JSON value that is either a string or an array of text parts
/// (`{"type":"text","text":...}` or `{"text":...}`).
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.clone()),
                _ => match p.get("text").and_then(Value::as_str) {
                    Some(t) => Some(t.to_string()),
                    None => p.get("content").map(content_text),
                },
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}
