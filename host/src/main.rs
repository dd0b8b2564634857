//! The `weir` command: its CLI and the dispatch of each subcommand to
//! the library (`weir status`, which only reads the admin API, is
//! `status.rs`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use weir::admin::probes::ProbeListener;

mod allocator;
mod status;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "A programmable API and AI gateway with WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway.
    Run {
        #[command(flatten)]
        config: ConfigFile,
        /// Worker threads serving requests (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Validate a config, loading and configuring every plugin, without
    /// serving. Exits non-zero listing every problem.
    Check {
        #[command(flatten)]
        config: ConfigFile,
    },
    /// Create and build plugin projects.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Summarise a running gateway from its admin API: health, routes and
    /// their targets' circuits, plugins and their last load errors, the
    /// last minute's traffic and the latest errors.
    Status {
        /// The admin API's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9901")]
        admin: String,
        /// The admin token (default: the WEIR_ADMIN_TOKEN environment
        /// variable).
        #[arg(long)]
        token: Option<String>,
    },
    /// Run a small echo server to stand in for an upstream.
    DemoUpstream {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
        /// Name reported in responses.
        #[arg(long, default_value = "demo")]
        name: String,
    },
}

/// The config file, given as `weir run FILE` or `weir run --config FILE`.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct ConfigFile {
    /// The config file.
    #[arg(value_name = "CONFIG")]
    file: Option<PathBuf>,
    /// The config file (the same as the positional argument).
    #[arg(long = "config", short = 'c', value_name = "CONFIG")]
    flag: Option<PathBuf>,
}

impl ConfigFile {
    fn path(self) -> PathBuf {
        // The group requires exactly one of the two.
        self.file.or(self.flag).unwrap_or_default()
    }
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Create a plugin project from a template: a plugin that adds a
    /// header, the contract, a build script and a README.
    New {
        /// The plugin's name (lowercase letters, digits, '-'); also the
        /// project directory's name.
        name: String,
        /// The language.
        #[arg(long, value_enum)]
        lang: weir::toolchain::Lang,
        /// Where to create the project directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build the plugin project in DIR into a component (the language is
    /// detected), check it against the contract, and optionally install it.
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Copy the component into this plugin directory as NAME.wasm.
        #[arg(long)]
        install: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    allocator::install();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    // One worker thread: the single-threaded scheduler, which skips the
    // work-stealing machinery a lone worker never uses.
    let mut builder = match &cli.command {
        Command::Run { threads: Some(1), .. } => tokio::runtime::Builder::new_current_thread(),
        Command::Run { threads: Some(n), .. } => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads((*n).max(1));
            builder
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Run { config, .. } => run(config.path()).await,
            Command::Check { config } => {
                let config = config.path();
                match weir::check::check(&config).await {
                    Ok(lines) => {
                        for line in lines {
                            println!("{line}");
                        }
                        println!("config {} is valid", config.display());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Plugin(command) => plugin(command).await,
            Command::Status { admin, token } => {
                let token = token.or_else(|| std::env::var("WEIR_ADMIN_TOKEN").ok().filter(|t| !t.is_empty()));
                match status::report(&admin, token).await {
                    Ok(text) => {
                        print!("{text}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("weir status: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::DemoUpstream { listen, name } => match weir::proxy::listener::bind(&listen).await {
                Ok((listener, addr)) => {
                    eprintln!("demo upstream {name:?} listening on {addr}");
                    weir::demo::serve(listener, name).await;
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("weir: {e:#}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}

async fn plugin(command: PluginCommand) -> ExitCode {
    match command {
        PluginCommand::New { name, lang, dir } => match weir::toolchain::new_project(&name, lang, &dir) {
            Ok(project) => {
                println!("created {} plugin {name} in {}", lang.name(), project.display());
                println!("build it with: weir plugin build {}", project.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("weir plugin new: {e}");
                ExitCode::FAILURE
            }
        },
        PluginCommand::Build { dir, install } => match weir::toolchain::build(&dir, install.as_deref()).await {
            Ok(built) => {
                println!("built {} ({})", built.wasm.display(), built.lang.name());
                if let Some(installed) = built.installed {
                    println!("installed {}", installed.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("weir plugin build: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn run(config: PathBuf) -> ExitCode {
    // The probe listener comes up before the plugins load, which can take
    // seconds: meanwhile an orchestrator sees a live process that is not
    // ready yet, rather than a closed port.
    let health_address = match weir::config::Config::load(&config) {
        Ok(c) => c.admin.and_then(|a| a.health_address),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let probes = match health_address {
        Some(address) => match ProbeListener::bind(&address).await {
            Ok(probes) => {
                tracing::info!(
                    "health and readiness probes on {} (not ready until the config serves)",
                    probes.addr()
                );
                Some(probes)
            }
            Err(e) => {
                eprintln!("weir: admin.health_address: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let gateway = match weir::gateway::Gateway::load_file(&config).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let running = match weir::running::start_with_probes(gateway, probes).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weir: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    wait_for_signal().await;
    // From here `/readyz` answers 503 while requests in flight finish.
    tracing::info!("shutting down; letting open requests finish");
    running.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
