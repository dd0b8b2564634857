//! OpenAI messages → Gemini `contents` and `systemInstruction`.

use serde_json::{Map, Value};
use weir_sdk::ai::ApiError;
use weir_sdk::ai::openai::{Content, ContentPart, ImageUrl, Message, Role, ToolCall};

use crate::PROVIDER;
use crate::wire::{Blob, Content as Turn, FileData, FunctionCall, FunctionResponse, Part};

/// The messages as Gemini turns, gathered one message at a time.
#[derive(Default)]
pub struct Conversation {
    /// System and developer messages, wherever they were.
    pub system: Vec<Part>,
    /// The turns.
    pub contents: Vec<Turn>,
    /// The last turn holds tool results only: the next result joins it.
    in_tool_results: bool,
    /// The media resolution images asked for, and the field that asked.
    pub media_resolution: Option<(&'static str, String)>,
}

impl Conversation {
    /// Add message `i`; `earlier` are the messages before it.
    pub fn add(&mut self, i: usize, message: &Message, earlier: &[Message]) -> Result<(), ApiError> {
        let at = format!("messages[{i}]");
        if message.name.is_some() {
            return Err(ApiError::unsupported(&format!("{at}.name"), PROVIDER));
        }
        if message.tool_calls.is_some() && message.role != Role::Assistant {
            return Err(ApiError::invalid_request(
                Some(&format!("{at}.tool_calls")),
                "only assistant messages carry tool_calls",
            ));
        }
        if message.tool_call_id.is_some() && message.role != Role::Tool {
            return Err(ApiError::invalid_request(
                Some(&format!("{at}.tool_call_id")),
                "only tool messages carry tool_call_id",
            ));
        }
        let was_tool_results = std::mem::take(&mut self.in_tool_results);
        match message.role {
            Role::System | Role::Developer => {
                let content = required(&message.content, &at)?;
                self.system.extend(text_parts(content, &at)?);
            }
            Role::User => {
                let content = required(&message.content, &at)?;
                let parts = self.user_parts(content, &at)?;
                self.contents.push(turn("user", parts));
            }
            Role::Assistant => {
                let mut parts = match &message.content {
                    Some(content) => text_parts(content, &at)?,
                    None => Vec::new(),
                };
                let calls = message.tool_calls.as_deref().unwrap_or_default();
                if !calls.is_empty() {
                    // A tool-calling turn often carries `""` as its content.
                    parts.retain(|p| *p != Part::Text(String::new()));
                }
                for (j, call) in calls.iter().enumerate() {
                    parts.push(function_call(call, &format!("{at}.tool_calls[{j}]"))?);
                }
                if parts.is_empty() {
                    return Err(ApiError::invalid_request(
                        Some(&format!("{at}.content")),
                        "an assistant message needs content or tool_calls",
                    ));
                }
                self.contents.push(turn("model", parts));
            }
            Role::Tool => {
                let part = function_response(message, earlier, &at)?;
                match self.contents.last_mut() {
                    Some(last) if was_tool_results => last.parts.push(part),
                    _ => self.contents.push(turn("user", vec![part])),
                }
                self.in_tool_results = true;
            }
        }
        Ok(())
    }

    /// A user message's parts: text and images.
    fn user_parts(&mut self, content: &Content, at: &str) -> Result<Vec<Part>, ApiError> {
        let Content::Parts(parts) = content else {
            return text_parts(content, at);
        };
        let mut out = Vec::new();
        for (j, part) in parts.iter().enumerate() {
            match part {
                ContentPart::Text { text } => out.push(Part::Text(text.clone())),
                ContentPart::ImageUrl { image_url } => {
                    let at = format!("{at}.content[{j}].image_url");
                    self.note_detail(image_url, &at)?;
                    out.push(image(image_url, &at)?);
                }
            }
        }
        Ok(out)
    }

    /// Gemini has one media resolution per request, not one per image.
    fn note_detail(&mut self, image_url: &ImageUrl, at: &str) -> Result<(), ApiError> {
        let resolution = match image_url.detail.as_deref() {
            None | Some("auto") => return Ok(()),
            Some("low") => "MEDIA_RESOLUTION_LOW",
            Some("high") => "MEDIA_RESOLUTION_HIGH",
            Some(other) => {
                return Err(ApiError::invalid_request(
                    Some(&format!("{at}.detail")),
                    &format!("{at}.detail must be low, high or auto, not {other:?}"),
                ));
            }
        };
        match &self.media_resolution {
            Some((set, first)) if *set != resolution => Err(ApiError {
                message: format!(
                    "{at}.detail differs from {first}.detail: {PROVIDER} has one image resolution per request"
                ),
                ..ApiError::unsupported(&format!("{at}.detail"), PROVIDER)
            }),
            Some(_) => Ok(()),
            None => {
                self.media_resolution = Some((resolution, at.to_string()));
                Ok(())
            }
        }
    }
}

fn turn(role: &'static str, parts: Vec<Part>) -> Turn {
    Turn {
        role: Some(role),
        parts,
    }
}

fn required<'a>(content: &'a Option<Content>, at: &str) -> Result<&'a Content, ApiError> {
    content
        .as_ref()
        .ok_or_else(|| ApiError::invalid_request(Some(&format!("{at}.content")), "this message needs content"))
}

/// Text parts; an image where only text can go is refused.
fn text_parts(content: &Content, at: &str) -> Result<Vec<Part>, ApiError> {
    match content {
        Content::Text(text) => Ok(vec![Part::Text(text.clone())]),
        Content::Parts(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| match part {
                ContentPart::Text { text } => Ok(Part::Text(text.clone())),
                ContentPart::ImageUrl { .. } => Err(ApiError::unsupported(&format!("{at}.content[{j}]"), PROVIDER)),
            })
            .collect(),
    }
}

/// A `data:` URL becomes inline data; an http(s) URL a file reference,
/// whose media type Gemini needs and the URL's extension tells.
fn image(image_url: &ImageUrl, at: &str) -> Result<Part, ApiError> {
    let field = format!("{at}.url");
    let url = &image_url.url;
    if url.starts_with("data:") {
        let (mime_type, data) = image_url.inline_data().ok_or_else(|| {
            ApiError::invalid_request(Some(&field), "a data: URL must be data:<media type>;base64,<data>")
        })?;
        return Ok(Part::InlineData(Blob {
            mime_type: mime_type.to_string(),
            data: data.to_string(),
        }));
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ApiError::invalid_request(
            Some(&field),
            "an image URL must be https://, http:// or data:",
        ));
    }
    let mime_type = image_type(url).ok_or_else(|| {
        ApiError::invalid_request(
            Some(&field),
            &format!(
                "{PROVIDER} needs an image URL's media type: its path must end in .png, .jpg, .jpeg, .webp, .heic or .heif (or send the image as a data: URL)"
            ),
        )
    })?;
    Ok(Part::FileData(FileData {
        mime_type,
        file_uri: url.clone(),
    }))
}

/// The media type of an image URL, from its path's extension.
fn image_type(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let file = path.rsplit('/').next().unwrap_or_default();
    let (_, extension) = file.rsplit_once('.')?;
    match extension.to_ascii_lowercase().as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "webp" => Some("image/webp"),
        "heic" => Some("image/heic"),
        "heif" => Some("image/heif"),
        _ => None,
    }
}

fn function_call(call: &ToolCall, at: &str) -> Result<Part, ApiError> {
    if call.kind != "function" {
        return Err(ApiError::unsupported(&format!("{at}.type"), PROVIDER));
    }
    let field = format!("{at}.function.arguments");
    let args = match serde_json::from_str(&call.function.arguments) {
        Ok(Value::Object(args)) => args,
        _ => {
            return Err(ApiError::invalid_request(
                Some(&field),
                &format!("{field} must be a JSON object"),
            ));
        }
    };
    Ok(Part::FunctionCall(FunctionCall {
        name: call.function.name.clone(),
        args,
    }))
}

/// A tool message: its result, under the name of the call it answers
/// (Gemini pairs results with calls by name, not by id).
fn function_response(message: &Message, earlier: &[Message], at: &str) -> Result<Part, ApiError> {
    let id_field = format!("{at}.tool_call_id");
    let id = message
        .tool_call_id
        .as_deref()
        .ok_or_else(|| ApiError::invalid_request(Some(&id_field), "a tool message needs tool_call_id"))?;
    // The nearest earlier call with this id: ids repeat across turns
    // (`call_0` in every answer).
    let name = earlier
        .iter()
        .rev()
        .flat_map(|m| m.tool_calls.iter().flatten())
        .find(|call| call.id == id)
        .map(|call| call.function.name.clone())
        .ok_or_else(|| {
            ApiError::invalid_request(
                Some(&id_field),
                &format!("no earlier assistant message has a tool call with id {id:?}"),
            )
        })?;
    let content = required(&message.content, at)?;
    let text = content.text_only().ok_or_else(|| {
        let j = content
            .parts()
            .iter()
            .position(|p| !matches!(p, ContentPart::Text { .. }))
            .unwrap_or_default();
        ApiError::unsupported(&format!("{at}.content[{j}]"), PROVIDER)
    })?;
    let response = match serde_json::from_str(&text) {
        Ok(Value::Object(object)) => object,
        _ => Map::from_iter([("content".to_string(), Value::String(text))]),
    };
    Ok(Part::FunctionResponse(FunctionResponse { name, response }))
}
