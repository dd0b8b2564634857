//! The Gemini API's wire format (Generative Language API, `v1beta`): the
//! `GenerateContentRequest` this shim sends, the `GenerateContentResponse`
//! it reads (whole, or one per server-sent event), and the error body.
//!
//! Outgoing types hold exactly what the shim maps; incoming types read what
//! the shim translates and ignore the rest (safety ratings, citations,
//! `responseId`, ...), so new response fields do not break it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST .../models/{model}:generateContent` (and `:streamGenerateContent`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    /// The conversation: `user` and `model` turns.
    pub contents: Vec<Content>,
    /// System and developer messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content>,
    /// The functions the model may call.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// Whether and which function the model must call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
    /// Sampling and output settings.
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    pub generation_config: GenerationConfig,
}

/// One turn (or the system instruction, which has no role).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Content {
    /// `user` or `model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// What the turn says.
    pub parts: Vec<Part>,
}

/// One part of a turn; each carries exactly one kind of data.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Part {
    /// `{"text": ...}`.
    Text(String),
    /// `{"inlineData": {"mimeType", "data"}}`: base64 bytes.
    InlineData(Blob),
    /// `{"fileData": {"mimeType", "fileUri"}}`: bytes by URI.
    FileData(FileData),
    /// `{"functionCall": {"name", "args"}}`: a call the model made.
    FunctionCall(FunctionCall),
    /// `{"functionResponse": {"name", "response"}}`: a call's result.
    FunctionResponse(FunctionResponse),
}

/// Inline bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    /// Their media type.
    pub mime_type: String,
    /// Base64.
    pub data: String,
}

/// Bytes by URI.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    /// Their media type.
    pub mime_type: &'static str,
    /// Where they are.
    pub file_uri: String,
}

/// A function call in the conversation's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionCall {
    /// The function.
    pub name: String,
    /// Its arguments: a JSON object.
    pub args: Map<String, Value>,
}

/// A function's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionResponse {
    /// The function that was called.
    pub name: String,
    /// Its result: a JSON object.
    pub response: Map<String, Value>,
}

/// A group of function declarations.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    /// The functions.
    pub function_declarations: Vec<FunctionDeclaration>,
}

/// A function the model may call.
#[derive(Debug, Serialize)]
pub struct FunctionDeclaration {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its arguments, as a Gemini `Schema` of type `OBJECT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

/// `toolConfig`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    /// The only setting there is.
    pub function_calling_config: FunctionCallingConfig,
}

/// `toolConfig.functionCallingConfig`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCallingConfig {
    /// `AUTO`, `ANY`, `NONE` or `VALIDATED`.
    pub mode: &'static str,
    /// With `ANY`: the functions the model may pick from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_function_names: Vec<String>,
}

/// `generationConfig`.
#[derive(Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Most tokens to generate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// How many candidates to generate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_count: Option<u32>,
    /// Sampling seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i32>,
    /// Presence penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// `application/json` for JSON output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<&'static str>,
    /// The JSON output's shape, as a Gemini `Schema`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<Value>,
    /// `MEDIA_RESOLUTION_LOW` or `MEDIA_RESOLUTION_HIGH`, from images' `detail`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_resolution: Option<&'static str>,
}

impl GenerationConfig {
    fn is_empty(&self) -> bool {
        *self == GenerationConfig::default()
    }
}

/// A whole answer, or one event of a streamed one.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    /// The candidates (none when the prompt was blocked).
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    /// Why the prompt was blocked, if it was.
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    /// Token counts (in a stream, complete in the last event).
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    /// The model that answered.
    #[serde(default)]
    pub model_version: Option<String>,
    /// In a stream, an event that is an error instead (`{"error": ...}`).
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

/// One candidate answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// What it says (absent when it was blocked).
    #[serde(default)]
    pub content: Option<CandidateContent>,
    /// Why it ended; in a stream, only in its last event.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Its index among the candidates.
    #[serde(default)]
    pub index: Option<u32>,
}

/// A candidate's content.
#[derive(Debug, Default, Deserialize)]
pub struct CandidateContent {
    /// Its parts.
    #[serde(default)]
    pub parts: Vec<ResponsePart>,
}

/// One part of a candidate. Besides text and function calls, the kinds of
/// output the shim cannot translate are read so they are refused rather
/// than lost.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponsePart {
    /// Text.
    #[serde(default)]
    pub text: Option<String>,
    /// The text is the model's thinking, not its answer.
    #[serde(default)]
    pub thought: Option<bool>,
    /// A function call.
    #[serde(default)]
    pub function_call: Option<ResponseFunctionCall>,
    /// Generated bytes (images).
    #[serde(default)]
    pub inline_data: Option<Value>,
    /// Generated bytes by URI.
    #[serde(default)]
    pub file_data: Option<Value>,
    /// Code the model ran with the code execution tool.
    #[serde(default)]
    pub executable_code: Option<Value>,
    /// The result of that code.
    #[serde(default)]
    pub code_execution_result: Option<Value>,
}

/// A function call the model made.
#[derive(Debug, Default, Deserialize)]
pub struct ResponseFunctionCall {
    /// The call's id, when Gemini gives one (it usually does not).
    #[serde(default)]
    pub id: Option<String>,
    /// The function.
    pub name: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Option<Value>,
}

/// `promptFeedback`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    /// `SAFETY`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `OTHER`, ...
    #[serde(default)]
    pub block_reason: Option<String>,
}

/// `usageMetadata`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_token_count: u32,
    /// Tokens in the prompt's tool results (search, code execution).
    #[serde(default)]
    pub tool_use_prompt_token_count: u32,
    /// Tokens in the candidates.
    #[serde(default)]
    pub candidates_token_count: u32,
    /// Tokens the model spent thinking.
    #[serde(default)]
    pub thoughts_token_count: u32,
}

/// `{"error": {...}}`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A Google API error (`google.rpc.Status` in JSON).
#[derive(Debug, Default, Deserialize)]
pub struct ErrorDetail {
    /// The HTTP status.
    #[serde(default)]
    pub code: Option<u16>,
    /// What went wrong.
    #[serde(default)]
    pub message: Option<String>,
    /// The canonical code: `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`, ...
    #[serde(default)]
    pub status: Option<String>,
    /// Typed details; `google.rpc.ErrorInfo` carries a `reason`.
    #[serde(default)]
    pub details: Vec<Value>,
}

impl ErrorDetail {
    /// The `reason` of its `ErrorInfo` detail (`API_KEY_INVALID`, ...).
    pub fn reason(&self) -> Option<&str> {
        self.details
            .iter()
            .find_map(|d| d.get("reason").and_then(Value::as_str))
    }
}
