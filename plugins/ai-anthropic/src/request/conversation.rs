//! The conversation: system and developer messages become the top-level
//! `system`; the rest become user and assistant turns of content blocks.

use serde_json::{Value, json};
use weir_sdk::ai::ApiError;
use weir_sdk::ai::openai::{Content, ContentPart, ImageUrl, Message, Role};

use super::wire::{Block, ImageSource, ToolResultContent, Turn, TurnRole};
use crate::PROVIDER;

/// Image types Anthropic accepts inline.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// The system prompt and the turns.
pub(super) fn conversation(messages: &[Message]) -> Result<(Option<String>, Vec<Turn>), ApiError> {
    let mut system = Vec::new();
    let mut turns = Turns::default();
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        refuse_misplaced_fields(message, &at)?;
        match message.role {
            Role::System | Role::Developer => system.push(system_text(message, &at)?),
            Role::User => turns.push(TurnRole::User, user_blocks(message, &at)?),
            Role::Assistant => turns.push(TurnRole::Assistant, assistant_blocks(message, &at)?),
            Role::Tool => turns.push_tool_result(tool_result(message, &at)?),
        }
    }
    let system = system.into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>();
    Ok(((!system.is_empty()).then(|| system.join("\n\n")), turns.0))
}

/// Turns of alternating roles: a block for the role of the last turn
/// joins that turn.
#[derive(Default)]
struct Turns(Vec<Turn>);

impl Turns {
    fn push(&mut self, role: TurnRole, blocks: Vec<Block>) {
        match self.0.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => self.0.push(Turn { role, content: blocks }),
        }
    }

    /// Tool results go in a user turn, before any text of that turn:
    /// Anthropic wants them first.
    fn push_tool_result(&mut self, block: Block) {
        match self.0.last_mut() {
            Some(last) if last.role == TurnRole::User => {
                let at = last
                    .content
                    .iter()
                    .position(|b| !matches!(b, Block::ToolResult { .. }))
                    .unwrap_or(last.content.len());
                last.content.insert(at, block);
            }
            _ => self.0.push(Turn {
                role: TurnRole::User,
                content: vec![block],
            }),
        }
    }
}

/// Refuse fields that mean nothing for the message's role, or that
/// Anthropic cannot carry (participant names).
fn refuse_misplaced_fields(message: &Message, at: &str) -> Result<(), ApiError> {
    // A tool message's name repeats the called function's; the
    // `tool_use_id` already says which call it answers.
    if message.name.is_some() && message.role != Role::Tool {
        return Err(ApiError::unsupported(&format!("{at}.name"), PROVIDER));
    }
    if message.tool_calls.is_some() && message.role != Role::Assistant {
        return Err(ApiError::unsupported(&format!("{at}.tool_calls"), PROVIDER));
    }
    if message.tool_call_id.is_some() && message.role != Role::Tool {
        return Err(ApiError::unsupported(&format!("{at}.tool_call_id"), PROVIDER));
    }
    Ok(())
}

fn system_text(message: &Message, at: &str) -> Result<String, ApiError> {
    let Some(content) = &message.content else {
        return Err(missing_content(at));
    };
    content.text_only().ok_or_else(|| {
        let part = first_non_text_part(content);
        ApiError::invalid_request(
            Some(&format!("{at}.content[{part}]")),
            &format!("{at}.content[{part}]: Anthropic takes only text as system instructions"),
        )
    })
}

fn first_non_text_part(content: &Content) -> usize {
    content
        .parts()
        .iter()
        .position(|p| !matches!(p, ContentPart::Text { .. }))
        .unwrap_or(0)
}

fn user_blocks(message: &Message, at: &str) -> Result<Vec<Block>, ApiError> {
    let Some(content) = &message.content else {
        return Err(missing_content(at));
    };
    let blocks = content_blocks(content, at)?;
    if blocks.is_empty() {
        return Err(missing_content(at));
    }
    Ok(blocks)
}

fn assistant_blocks(message: &Message, at: &str) -> Result<Vec<Block>, ApiError> {
    let mut blocks = Vec::new();
    if let Some(content) = &message.content {
        for (j, part) in content.parts().into_iter().enumerate() {
            match part {
                ContentPart::Text { text } if text.is_empty() => {}
                ContentPart::Text { text } => blocks.push(Block::Text { text }),
                ContentPart::ImageUrl { .. } => {
                    return Err(ApiError::invalid_request(
                        Some(&format!("{at}.content[{j}]")),
                        &format!("{at}.content[{j}]: Anthropic takes images only from the user"),
                    ));
                }
            }
        }
    }
    for (k, call) in message.tool_calls.iter().flatten().enumerate() {
        let call_at = format!("{at}.tool_calls[{k}]");
        if call.kind != "function" {
            return Err(ApiError::unsupported(&format!("{call_at}.type"), PROVIDER));
        }
        blocks.push(Block::ToolUse {
            id: call.id.clone(),
            name: call.function.name.clone(),
            input: tool_input(&call.function.arguments, &format!("{call_at}.function.arguments"))?,
        });
    }
    if blocks.is_empty() {
        return Err(ApiError::invalid_request(
            Some(&format!("{at}.content")),
            &format!("{at}: an assistant message needs content or tool_calls"),
        ));
    }
    Ok(blocks)
}

/// A tool call's arguments as the JSON object Anthropic's `input` is. No
/// arguments at all (an empty string) is an empty object.
fn tool_input(arguments: &str, at: &str) -> Result<Value, ApiError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(input @ Value::Object(_)) => Ok(input),
        Ok(_) => Err(ApiError::invalid_request(
            Some(at),
            &format!("{at} must be a JSON object"),
        )),
        Err(e) => Err(ApiError::invalid_request(
            Some(at),
            &format!("{at} is not valid JSON: {e}"),
        )),
    }
}

fn tool_result(message: &Message, at: &str) -> Result<Block, ApiError> {
    let Some(tool_use_id) = message.tool_call_id.clone() else {
        return Err(ApiError::invalid_request(
            Some(&format!("{at}.tool_call_id")),
            &format!("{at}: a tool message needs tool_call_id"),
        ));
    };
    let content = match &message.content {
        None => None,
        Some(Content::Text(text)) if text.is_empty() => None,
        Some(Content::Text(text)) => Some(ToolResultContent::Text(text.clone())),
        Some(content) => {
            let blocks = content_blocks(content, at)?;
            (!blocks.is_empty()).then_some(ToolResultContent::Blocks(blocks))
        }
    };
    Ok(Block::ToolResult { tool_use_id, content })
}

/// Text and image parts as blocks; empty text carries nothing and is left
/// out (Anthropic refuses empty text blocks).
fn content_blocks(content: &Content, at: &str) -> Result<Vec<Block>, ApiError> {
    let mut blocks = Vec::new();
    for (j, part) in content.parts().into_iter().enumerate() {
        match part {
            ContentPart::Text { text } if text.is_empty() => {}
            ContentPart::Text { text } => blocks.push(Block::Text { text }),
            ContentPart::ImageUrl { image_url } => {
                blocks.push(image(&image_url, &format!("{at}.content[{j}].image_url.url"))?)
            }
        }
    }
    Ok(blocks)
}

/// An image block from a `data:` URL (inline base64) or an `http(s)` URL.
/// OpenAI's `detail` hint has no Anthropic equivalent: Anthropic sizes
/// images itself.
fn image(image: &ImageUrl, at: &str) -> Result<Block, ApiError> {
    if let Some((media_type, data)) = image.inline_data() {
        if !IMAGE_TYPES.contains(&media_type) {
            return Err(ApiError::invalid_request(
                Some(at),
                &format!("{at}: image type {media_type} is not supported by Anthropic (jpeg, png, gif, webp)"),
            ));
        }
        return Ok(Block::Image {
            source: ImageSource::Base64 {
                media_type: media_type.to_string(),
                data: data.to_string(),
            },
        });
    }
    let scheme = image.url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    if matches!(scheme.as_deref(), Some("http" | "https")) {
        return Ok(Block::Image {
            source: ImageSource::Url { url: image.url.clone() },
        });
    }
    Err(ApiError::invalid_request(
        Some(at),
        &format!("{at}: an image must be a base64 data: URL or an http(s) URL"),
    ))
}

fn missing_content(at: &str) -> ApiError {
    ApiError::invalid_request(
        Some(&format!("{at}.content")),
        &format!("{at}.content must not be empty"),
    )
}
