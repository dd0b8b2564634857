//! What plugins print. A plugin has no terminal; its stdout and stderr
//! (a Rust panic message, say) are written to the gateway's log a line at
//! a time, tagged with the plugin's name.

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

impl wasmtime_wasi::cli::StdoutStream for PluginOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineLogger {
            plugin: self.plugin.clone(),
            stream: self.stream,
            pending: Vec::new(),
        })
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

impl tokio::io::AsyncWrite for LineLogger {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.pending.extend_from_slice(buf);
        while let Some(end) = this.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = this.pending.drain(..=end).collect();
            this.emit(&line);
        }
        if this.pending.len() > MAX_OUTPUT_LINE {
            let line = std::mem::take(&mut this.pending);
            this.emit(&line);
        }
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
        let this = self.get_mut();
        let line = std::mem::take(&mut this.pending);
        this.emit(&line);
        std::task::Poll::Ready(Ok(()))
    }
}
