//! Distributed tracing: W3C `traceparent` is always read from clients (or a
//! trace started) and sent on to upstreams (see [`TraceContext`]); with
//! `[tracing] otlp_endpoint` set, each finished request is also exported
//! over OTLP/HTTP as a span tree — a server span for the request, a child
//! per plugin call and per upstream attempt — built from its record with
//! the times it recorded. Spans are batched and sent by the OpenTelemetry
//! SDK's own thread; the request path never waits on the collector.

use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider};

use super::record::{AttemptOutcome, Phase, PluginOutcome, RequestRecord, TraceContext};
use weir_config::{OtlpProtocol, TracingConfig};

/// The OTLP exporter.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Tracing {
    /// Start exporting to `config.otlp_endpoint`; `None` when it is not set.
    pub fn start(config: &TracingConfig) -> anyhow::Result<Option<Tracing>> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .with_protocol(match config.protocol {
                OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
                OtlpProtocol::HttpJson => Protocol::HttpJson,
            })
            .with_timeout(Duration::from_millis(config.export_timeout_ms))
            .build()
            .map_err(|e| anyhow::anyhow!("tracing.otlp_endpoint: {e}"))?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(Duration::from_millis(config.batch_delay_ms))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "weir");
        Ok(Some(Tracing { provider, tracer }))
    }

    /// Export the spans of a finished request, if its trace is sampled.
    pub fn export(&self, record: &RequestRecord) {
        let trace = record.trace;
        if !trace.sampled {
            return;
        }
        let client_cx = match trace.parent {
            Some(parent) => context_of(&trace, parent, true),
            None => Context::new(),
        };
        let start = record.start_time;
        let mut attributes = vec![
            KeyValue::new("http.request.method", record.method.to_string()),
            KeyValue::new("url.path", record.path.clone()),
            KeyValue::new("http.response.status_code", i64::from(record.status)),
            KeyValue::new("client.address", record.client.to_string()),
        ];
        if let Some(route) = &record.route {
            attributes.push(KeyValue::new("http.route", route.to_string()));
        }
        if let Some(error) = record.error {
            attributes.push(KeyValue::new("error.type", error));
        }
        let name = format!(
            "{} {}",
            record.method,
            record.route.as_ref().map_or("-", |r| r.as_str())
        );
        let mut span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_trace_id(TraceId::from_bytes(trace.trace_id))
            .with_span_id(SpanId::from_bytes(trace.span_id))
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &client_cx);
        if record.status >= 500 {
            span.set_status(Status::error(record.error.unwrap_or("server error")));
        }
        span.end_with_timestamp(start + record.elapsed());

        let request_cx = context_of(&trace, trace.span_id, false);
        for call in &record.plugins {
            let mut attributes = vec![
                KeyValue::new("weir.plugin", call.plugin.to_string()),
                KeyValue::new("weir.plugin.phase", call.phase.as_str()),
                KeyValue::new("weir.plugin.outcome", call.outcome.as_str()),
            ];
            if let PluginOutcome::Responded(status) = call.outcome {
                attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
            }
            if call.phase == Phase::Chunk {
                // One span for all the chunk calls, from the first call's
                // start, as long as their time added up.
                attributes.push(KeyValue::new("weir.plugin.calls", i64::from(call.calls)));
            }
            let mut span = self
                .tracer
                .span_builder(format!("plugin {} {}", call.plugin, call.phase.as_str()))
                .with_kind(SpanKind::Internal)
                .with_start_time(start + call.offset)
                .with_attributes(attributes)
                .start_with_context(&self.tracer, &request_cx);
            if let PluginOutcome::Fault { kind, .. } = call.outcome {
                span.set_status(Status::error(kind));
            }
            span.end_with_timestamp(start + call.offset + call.duration);
        }
        for attempt in &record.attempts {
            let mut attributes = vec![
                KeyValue::new("server.address", attempt.target.clone()),
                KeyValue::new("weir.upstream.result", attempt.outcome.as_str().into_owned()),
            ];
            if let Some(upstream) = &record.upstream {
                attributes.push(KeyValue::new("weir.upstream", upstream.to_string()));
            }
            if let AttemptOutcome::Answered(status) = attempt.outcome {
                attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
            }
            let mut span = self
                .tracer
                .span_builder(format!("upstream {}", record.method))
                .with_kind(SpanKind::Client)
                .with_span_id(SpanId::from_bytes(attempt.span_id))
                .with_start_time(start + attempt.offset)
                .with_attributes(attributes)
                .start_with_context(&self.tracer, &request_cx);
            match attempt.outcome {
                AttemptOutcome::Answered(status) if status < 500 => {}
                AttemptOutcome::ClientBody => {}
                outcome => span.set_status(Status::error(outcome.as_str())),
            }
            span.end_with_timestamp(start + attempt.offset + attempt.duration);
        }
    }

    /// Send what is batched and stop (at shutdown).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("flushing traces: {e}");
        }
    }
}

/// A context whose span is `span_id` in `trace`.
fn context_of(trace: &TraceContext, span_id: [u8; 8], remote: bool) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_bytes(trace.trace_id),
        SpanId::from_bytes(span_id),
        TraceFlags::SAMPLED,
        remote,
        TraceState::default(),
    ))
}
