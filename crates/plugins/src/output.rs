//! What plugins print. A plugin has no terminal; its stdout and stderr
//! (a Rust panic message, say) are written to the gateway's log a line at
//! a time, tagged with the plugin's name.
//!
//! Writing is never waited on: a line is logged as soon as it is complete,
//! so a plugin called directly (without a fiber) can print too.

use weir_config::PluginName;

/// A plugin's stdout or stderr, written to the log a line at a time.
pub struct PluginOutput {
    plugin: PluginName,
    stream: &'static str,
}

impl PluginOutput {
    /// Output of `plugin` on `stream` (`stdout` or `stderr`).
    pub fn new(plugin: PluginName, stream: &'static str) -> Self {
        PluginOutput { plugin, stream }
    }
}

impl wasmtime_wasi::cli::IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl PluginOutput {
    fn logger(&self) -> LineLogger {
        LineLogger {
            plugin: self.plugin.clone(),
            stream: self.stream,
            pending: Vec::new(),
        }
    }
}

impl wasmtime_wasi::cli::StdoutStream for PluginOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.logger())
    }

    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.logger())
    }
}

/// Longest line logged as one; longer output is split.
const MAX_OUTPUT_LINE: usize = 4096;

struct LineLogger {
    plugin: PluginName,
    stream: &'static str,
    pending: Vec<u8>,
}

impl LineLogger {
    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        if !text.is_empty() {
            tracing::warn!(target: "weir::plugin", plugin = %self.plugin, stream = self.stream, "{text}");
        }
    }
}

impl LineLogger {
    /// Take `buf`, logging every line it completes.
    fn push(&mut self, buf: &[u8]) {
        self.pending.extend_from_slice(buf);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.emit(&line);
        }
        if self.pending.len() > MAX_OUTPUT_LINE {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }

    /// Log what is left of an unfinished line.
    fn finish(&mut self) {
        let line = std::mem::take(&mut self.pending);
        self.emit(&line);
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        self.finish();
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for LineLogger {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::OutputStream for LineLogger {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(MAX_OUTPUT_LINE)
    }
}

impl tokio::io::AsyncWrite for LineLogger {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.get_mut().push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.get_mut().finish();
        std::task::Poll::Ready(Ok(()))
    }
}
