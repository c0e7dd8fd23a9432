//! The `weir` binary: parse flags, load the configuration, recover the data directory, serve
//! the Kafka protocol until SIGINT/SIGTERM, then shut down gracefully.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

mod commands;

use weir::config::Config;
use weir::server::RunningServer;
use weir::telemetry::MetricsServer;

/// jemalloc instead of glibc's malloc: it hands memory freed after a burst (produce buffers,
/// the tail cache of a partition gone idle) back to the OS, so the broker's RSS follows what
/// it holds. Configured in .cargo/config.toml.
#[cfg(all(feature = "jemalloc", unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Weir: a Kafka-compatible message broker.
///
/// With no arguments it serves on the embedded default configuration (config/weir.yaml):
/// listener 127.0.0.1:9092, data directory ./data, fsync durability. The subcommands are an
/// admin CLI that speaks the Kafka protocol to any broker, Weir or Kafka.
/// Log verbosity follows RUST_LOG (e.g. RUST_LOG=debug, RUST_LOG=weir=trace); default info.
#[derive(Debug, Parser)]
#[command(name = "weir", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Args,
    #[command(flatten)]
    connect: commands::Connect,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Exit 0 if the broker answers 200 on its metrics listener's /ready (for container
    /// health checks in images without curl); exit 1 otherwise.
    Healthcheck {
        /// The broker's metrics listener (`metrics_listen`).
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9644")]
        metrics_listen: String,
        /// /ready (recovered and serving) or /health (process alive).
        #[arg(long, default_value = "/ready")]
        path: String,
        #[arg(long, value_name = "MS", default_value_t = 3000)]
        timeout_ms: u64,
    },
    #[command(flatten)]
    Admin(commands::Admin),
}

#[derive(Debug, clap::Args)]
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
    /// host:port of the HTTP listener for /metrics, /health and /ready, or `off`.
    /// Overrides `metrics_listen`.
    #[arg(long, value_name = "HOST:PORT|off")]
    metrics_listen: Option<String>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    if let Some(Command::Healthcheck {
        metrics_listen,
        path,
        timeout_ms,
    }) = cli.command
    {
        return healthcheck(&metrics_listen, &path, Duration::from_millis(timeout_ms));
    }
    if let Some(Command::Admin(command)) = cli.command {
        return commands::run(command, cli.connect);
    }
    let args = cli.serve;
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
    match args.metrics_listen.as_deref() {
        None => {}
        Some("off") => config.metrics_listen = None,
        Some(addr) => {
            config.metrics_listen = Some(addr.parse().with_context(|| {
                format!("--metrics-listen `{addr}`: expected host:port or off")
            })?);
        }
    }
    Ok(config)
}

fn healthcheck(addr: &str, path: &str, timeout: Duration) -> std::process::ExitCode {
    match weir::telemetry::probe(addr, path, timeout) {
        Ok(200) => std::process::ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("weir healthcheck: http://{addr}{path} answered {status}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("weir healthcheck: http://{addr}{path}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Installs the metrics recorder and starts the operators' HTTP listener, before recovery
/// so `/health` answers (and `/ready` says not yet) while a large data directory recovers.
async fn start_metrics(config: &Config) -> anyhow::Result<Option<MetricsServer>> {
    weir::telemetry::mark_start();
    let Some(addr) = config.metrics_listen else {
        return Ok(None);
    };
    let handle = weir::telemetry::install().context("cannot install the metrics recorder")?;
    weir::telemetry::spawn_upkeep(handle.clone());
    let server = MetricsServer::start(addr, Some(handle))
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    Ok(Some(server))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let durability = config.durability;
    let shutdown_timeout = Duration::from_millis(config.shutdown_timeout_ms);
    let metrics = start_metrics(&config).await?;
    let server = RunningServer::start(config).await?;
    if let Some(metrics) = &metrics {
        metrics.set_broker(server.broker.clone());
    }
    let (host, port) = server.broker.advertised();
    info!(
        listener = %server.local_addr,
        advertised = format!("{host}:{port}"),
        data_dir = %server.broker.config.data_dir.display(),
        durability = durability.as_str(),
        topics = server.recovered.topics,
        partitions = server.recovered.partitions,
        clean_shutdown = server.recovered.clean_shutdown,
        metrics = metrics
            .as_ref()
            .map_or("off".to_string(), |m| format!("http://{}/metrics", m.local_addr)),
        "weir started"
    );
    for ((name, bound), extra) in server
        .extra_addrs
        .iter()
        .zip(&server.broker.config.extra_listeners)
    {
        info!(listener = %bound, name, advertised = extra.advertised, "extra listener");
    }
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
