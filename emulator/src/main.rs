//! `weir-emulator --listen 127.0.0.1:9100`: serve the provider emulator.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "weir-emulator",
    about = "Emulates OpenAI, Anthropic, Ollama, Gemini and Azure OpenAI APIs"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: std::net::SocketAddr,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("weir-emulator: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    eprintln!(
        "weir-emulator listening on {}",
        listener.local_addr().map_or(args.listen, |a| a)
    );
    weir_emulator::serve(listener, weir_emulator::Emulator::new()).await;
}
