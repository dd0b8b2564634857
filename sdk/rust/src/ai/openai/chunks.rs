//! [`ChunkWriter`]: the chunks of one streamed answer in OpenAI's shape,
//! each with the same id, time and model.

use super::*;

/// Builds the chunks of one streamed answer with the same id, time and
/// model in each.
///
/// Its chunks add to choice 0; [`ChunkWriter::for_choice`] gives a writer
/// for another choice, for answers with several (`n` > 1).
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    /// The completion id.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model reported.
    pub model: String,
    /// The choice the chunks add to.
    choice: u32,
}

impl ChunkWriter {
    /// A writer for one stream.
    pub fn new(id: impl Into<String>, created: u64, model: impl Into<String>) -> Self {
        ChunkWriter {
            id: id.into(),
            created,
            model: model.into(),
            choice: 0,
        }
    }

    /// The same writer for choice `index`: its chunks (role, text, tool
    /// calls, finish) add to that choice instead.
    pub fn for_choice(&self, index: u32) -> ChunkWriter {
        ChunkWriter {
            choice: index,
            ..self.clone()
        }
    }

    /// A chunk adding `delta` to this writer's choice (0 unless made with
    /// [`ChunkWriter::for_choice`]), with a finish reason if given.
    pub fn delta(&self, delta: Delta, finish_reason: Option<&str>) -> String {
        self.chunk(
            vec![ChunkChoice {
                index: self.choice,
                delta,
                finish_reason: finish_reason.map(str::to_string),
                logprobs: None,
            }],
            None,
        )
    }

    /// The first chunk: the assistant role, empty content.
    pub fn role(&self) -> String {
        self.delta(
            Delta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                tool_calls: None,
            },
            None,
        )
    }

    /// More text.
    pub fn text(&self, text: &str) -> String {
        self.delta(
            Delta {
                content: Some(text.to_string()),
                ..Delta::default()
            },
            None,
        )
    }

    /// The first piece of tool call `index`: its id and function name.
    pub fn tool_call_start(&self, index: u32, id: &str, name: &str) -> String {
        self.delta(
            Delta {
                tool_calls: Some(vec![ToolCallDelta {
                    index,
                    id: Some(id.to_string()),
                    kind: Some("function".into()),
                    function: Some(FunctionCallDelta {
                        name: Some(name.to_string()),
                        arguments: Some(String::new()),
                    }),
                }]),
                ..Delta::default()
            },
            None,
        )
    }

    /// More of tool call `index`'s arguments.
    pub fn tool_call_arguments(&self, index: u32, arguments: &str) -> String {
        self.delta(
            Delta {
                tool_calls: Some(vec![ToolCallDelta {
                    index,
                    id: None,
                    kind: None,
                    function: Some(FunctionCallDelta {
                        name: None,
                        arguments: Some(arguments.to_string()),
                    }),
                }]),
                ..Delta::default()
            },
            None,
        )
    }

    /// The choice's last chunk: an empty delta and the finish reason.
    pub fn finish(&self, finish_reason: &str) -> String {
        self.delta(Delta::default(), Some(finish_reason))
    }

    /// The usage chunk: no choices, the token counts.
    pub fn usage(&self, usage: Usage) -> String {
        self.chunk(Vec::new(), Some(usage))
    }

    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> String {
        let chunk = ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        };
        // Plain data structures with string keys always serialize.
        serde_json::to_string(&chunk).unwrap_or_default()
    }
}
