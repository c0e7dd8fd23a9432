//! The `weir` binary: parse flags, load the configuration, recover the data directory, serve
//! the Kafka protocol until SIGINT/SIGTERM, then shut down gracefully.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use weir::config::Config;
use weir::server::RunningServer;

/// Weir: a Kafka-compatible message broker.
///
/// With no arguments it serves on the embedded default configuration (config/weir.yaml):
/// listener 127.0.0.1:9092, data directory ./data, fsync durability.
/// Log verbosity follows RUST_LOG (e.g. RUST_LOG=debug, RUST_LOG=weir=trace); default info.
#[derive(Debug, Parser)]
#[command(name = "weir", version)]
struct Args {
    /// YAML file overriding any of the embedded defaults (unknown keys are rejected).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on for Kafka clients, e.g. 0.0.0.0:9092. Overrides `listen`.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<std::net::SocketAddr>,
    /// host:port clients are told to connect to. Overrides `advertised_listener`.
    #[arg(long, value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// Directory for partition logs and metadata. Overrides `data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("weir: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load_config(args: &Args) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded()?,
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(advertised) = &args.advertised_listener {
        weir::config::parse_host_port(advertised)
            .with_context(|| format!("--advertised-listener `{advertised}`: expected host:port"))?;
        config.advertised_listener = Some(advertised.clone());
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let durability = config.durability;
    let shutdown_timeout = Duration::from_millis(config.shutdown_timeout_ms);
    let server = RunningServer::start(config).await?;
    let (host, port) = server.broker.advertised();
    info!(
        listener = %server.local_addr,
        advertised = format!("{host}:{port}"),
        data_dir = %server.broker.config.data_dir.display(),
        durability = durability.as_str(),
        topics = server.recovered.topics,
        partitions = server.recovered.partitions,
        clean_shutdown = server.recovered.clean_shutdown,
        "weir started"
    );
    wait_for_signal().await;
    info!("shutting down: no new connections, finishing in-flight requests");
    server.shutdown(shutdown_timeout).await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
