//! OpenAI chat request → Gemini `GenerateContentRequest`.

use serde_json::Value;
use weir_sdk::ai::openai::{ChatRequest, ToolChoice};
use weir_sdk::ai::{ApiError, KeyPlacement, ProviderRequest};

use crate::PROVIDER;
use crate::messages::Conversation;
use crate::schema;
use crate::settings::Settings;
use crate::wire::{
    Content as Turn, FunctionCallingConfig, FunctionDeclaration, GenerateContentRequest, GenerationConfig, Tool,
    ToolConfig,
};

/// Translate an OpenAI chat request body for this target.
pub fn translate(settings: &Settings, body: &[u8]) -> Result<ProviderRequest, ApiError> {
    let request = ChatRequest::parse(body)?;
    let gemini = generate_content(&request)?;
    let body = serde_json::to_vec(&gemini)
        .map_err(|e| ApiError::for_status(500, &format!("the Gemini request could not be written: {e}")))?;
    Ok(ProviderRequest {
        method: "POST".into(),
        path: settings.path(request.is_stream()),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
        key: KeyPlacement::Header(("x-goog-api-key".into(), String::new())),
    })
}

/// The Gemini request for a parsed OpenAI request.
pub fn generate_content(request: &ChatRequest) -> Result<GenerateContentRequest, ApiError> {
    request.reject_extra(PROVIDER, &[])?;
    if request.user.is_some() {
        return Err(ApiError::unsupported("user", PROVIDER));
    }
    if request.parallel_tool_calls == Some(false) {
        // Gemini may always call several functions at once.
        return Err(ApiError::unsupported("parallel_tool_calls", PROVIDER));
    }
    let mut conversation = Conversation::default();
    for (i, message) in request.messages.iter().enumerate() {
        conversation.add(i, message, &request.messages[..i])?;
    }
    let mut generation_config = generation_config(request)?;
    generation_config.media_resolution = conversation.media_resolution.map(|(resolution, _)| resolution);
    let (tools, tool_config) = tools(request)?;
    Ok(GenerateContentRequest {
        contents: conversation.contents,
        system_instruction: (!conversation.system.is_empty()).then_some(Turn {
            role: None,
            parts: conversation.system,
        }),
        tools,
        tool_config,
        generation_config,
    })
}

fn generation_config(request: &ChatRequest) -> Result<GenerationConfig, ApiError> {
    let seed = request
        .seed
        .map(|seed| {
            i32::try_from(seed)
                .map_err(|_| ApiError::invalid_request(Some("seed"), &format!("{PROVIDER} takes a 32-bit seed")))
        })
        .transpose()?;
    let (response_mime_type, response_schema) = match &request.response_format {
        Some(format) => response_format(format)?,
        None => (None, None),
    };
    Ok(GenerationConfig {
        temperature: request.temperature,
        top_p: request.top_p,
        max_output_tokens: request.max_output_tokens(),
        stop_sequences: request.stop.as_ref().map(|s| s.to_vec()),
        candidate_count: request.n,
        seed,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        response_mime_type,
        response_schema,
        media_resolution: None,
    })
}

/// `response_format` → `responseMimeType` and `responseSchema`.
fn response_format(format: &Value) -> Result<(Option<&'static str>, Option<Value>), ApiError> {
    let Some(object) = format.as_object() else {
        return Err(ApiError::invalid_request(
            Some("response_format"),
            "response_format must be an object",
        ));
    };
    let kind = object.get("type").and_then(Value::as_str).unwrap_or_default();
    let allowed: &[&str] = match kind {
        "text" | "json_object" => &["type"],
        "json_schema" => &["type", "json_schema"],
        _ => return Err(ApiError::unsupported("response_format.type", PROVIDER)),
    };
    if let Some(extra) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::unsupported(&format!("response_format.{extra}"), PROVIDER));
    }
    match kind {
        "text" => Ok((None, None)),
        "json_object" => Ok((Some("application/json"), None)),
        _ => {
            let at = "response_format.json_schema";
            let Some(spec) = object.get("json_schema").and_then(Value::as_object) else {
                return Err(ApiError::invalid_request(Some(at), &format!("{at} must be an object")));
            };
            // `name` labels the format and `strict` asks for what Gemini's
            // schema-constrained output always does.
            if let Some(extra) = spec
                .keys()
                .find(|k| !matches!(k.as_str(), "name" | "description" | "schema" | "strict"))
            {
                return Err(ApiError::unsupported(&format!("{at}.{extra}"), PROVIDER));
            }
            let schema_at = format!("{at}.schema");
            let source = spec
                .get("schema")
                .ok_or_else(|| ApiError::invalid_request(Some(&schema_at), &format!("{schema_at} is required")))?;
            let mut schema = schema::to_gemini(source, &schema_at)?;
            if let (Some(description), Some(schema)) = (spec.get("description"), schema.as_object_mut()) {
                schema.entry("description").or_insert_with(|| description.clone());
            }
            Ok((Some("application/json"), Some(schema)))
        }
    }
}

/// `tools` and `tool_choice` → `tools` and `toolConfig`.
fn tools(request: &ChatRequest) -> Result<(Vec<Tool>, Option<ToolConfig>), ApiError> {
    let declared = request.tools.as_deref().unwrap_or_default();
    let mut declarations = Vec::new();
    for (i, tool) in declared.iter().enumerate() {
        if tool.kind != "function" {
            return Err(ApiError::unsupported(&format!("tools[{i}].type"), PROVIDER));
        }
        let function = &tool.function;
        let parameters = function
            .parameters
            .as_ref()
            .map(|p| schema::to_gemini(p, &format!("tools[{i}].function.parameters")))
            .transpose()?
            .filter(|p| !schema::is_empty_object(p));
        declarations.push(FunctionDeclaration {
            name: function.name.clone(),
            description: function.description.clone(),
            parameters,
        });
    }
    // `strict` asks for calls that match the schema: Gemini's VALIDATED
    // mode (ANY constrains calls already).
    let strict = declared.iter().any(|t| t.function.strict == Some(true));
    let config = |mode, allowed_function_names| {
        Some(ToolConfig {
            function_calling_config: FunctionCallingConfig {
                mode,
                allowed_function_names,
            },
        })
    };
    let tool_config = match &request.tool_choice {
        None if strict => config("VALIDATED", Vec::new()),
        None => None,
        Some(ToolChoice::Mode(mode)) if mode == "none" && declared.is_empty() => None,
        Some(ToolChoice::Mode(mode)) if mode == "none" => config("NONE", Vec::new()),
        Some(_) if declared.is_empty() => {
            return Err(ApiError::invalid_request(
                Some("tool_choice"),
                "tool_choice other than none needs tools",
            ));
        }
        Some(ToolChoice::Mode(mode)) if mode == "auto" => config(if strict { "VALIDATED" } else { "AUTO" }, Vec::new()),
        Some(ToolChoice::Mode(mode)) if mode == "required" => config("ANY", Vec::new()),
        Some(ToolChoice::Mode(mode)) => {
            return Err(ApiError::invalid_request(
                Some("tool_choice"),
                &format!("tool_choice must be none, auto, required or a function, not {mode:?}"),
            ));
        }
        Some(ToolChoice::Function { kind, function }) => {
            if kind != "function" {
                return Err(ApiError::unsupported("tool_choice.type", PROVIDER));
            }
            if !declared.iter().any(|t| t.function.name == function.name) {
                return Err(ApiError::invalid_request(
                    Some("tool_choice.function.name"),
                    &format!("tool_choice names {:?}, which is not in tools", function.name),
                ));
            }
            config("ANY", vec![function.name.clone()])
        }
    };
    let tools = if declarations.is_empty() {
        Vec::new()
    } else {
        vec![Tool {
            function_declarations: declarations,
        }]
    };
    Ok((tools, tool_config))
}
