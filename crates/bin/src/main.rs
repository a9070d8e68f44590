//! The `gatehouse` binary: command line, logging, the tokio runtime, signals. All logic
//! lives in `gatehouse-core`; this file only wires it to a process.

mod signals;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use gatehouse_core::{upgrade, Gateway, Source};
use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: memory freed (the buffers an idle connection
/// releases when parked, 10,000 closed connections) goes back to the system, where
/// glibc keeps it in the heap. `.cargo/config.toml` builds it with a background purge
/// thread and a one-second decay, so an idle process returns memory without waiting
/// for the next allocation. Measured in docs/benchmarks.md ("Memory per idle
/// connection").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const EXAMPLES: &str = "Examples:
  gatehouse run --config examples/quickstart.toml
  gatehouse check --config /etc/gatehouse/gatehouse.toml
  gatehouse run --config gatehouse.toml --watch --log-format json
  kill -HUP <pid>                  # reload the config file
  gatehouse upgrade --pid <pid>    # hand the sockets to the binary now at the path
  curl -X POST 127.0.0.1:9901/reload   # reload through the admin API
  gatehouse import openapi api.yaml --upstream api > routes.toml";

#[derive(Parser)]
#[command(name = "gatehouse", version, about = "Reverse proxy, load balancer and API gateway in one binary", after_help = EXAMPLES)]
struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, global = true, default_value = "info", env = "GATEHOUSE_LOG")]
    log_level: String,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// Config file (TOML, or YAML by .yaml/.yml extension).
        #[arg(short, long)]
        config: PathBuf,
        /// Reload when the config file changes (polled every second).
        #[arg(long)]
        watch: bool,
    },
    /// Validate a config file, print every error, and exit 1 if there is any.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Replace a running gateway with the binary now at its path, without dropping a
    /// connection: sends it SIGUSR2 (see docs/operations.md).
    Upgrade {
        /// The running gateway's process id.
        #[arg(long)]
        pid: i32,
    },
    /// Hash a secret read from standard input (one line) for a `[[consumers]]` entry:
    /// `password` prints an argon2id string for `basic.password`, `key` a
    /// `sha256:HEX` for `api_keys`.
    Hash {
        #[arg(value_enum)]
        what: HashKind,
    },
    /// Write a config fragment from an API description: `gatehouse import openapi
    /// SPEC` prints a route per operation, with the validation and auth it declares.
    Import {
        #[arg(value_enum)]
        kind: ImportKind,
        /// The OpenAPI 3.0 or 3.1 document (YAML or JSON).
        spec: PathBuf,
        /// The upstream the routes proxy to.
        #[arg(long, default_value = "backend")]
        upstream: String,
        /// Put in front of every route's name.
        #[arg(long, default_value = "")]
        name_prefix: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ImportKind {
    Openapi,
}

/// Prints the config fragment of an OpenAPI document; its notes also go to stderr.
fn import(spec: &PathBuf, upstream: String, name_prefix: String) -> anyhow::Result<ExitCode> {
    use gatehouse_config::openapi;
    let text =
        std::fs::read_to_string(spec).with_context(|| format!("cannot read {}", spec.display()))?;
    let doc = openapi::parse(&text).map_err(anyhow::Error::msg)?;
    let opts = openapi::ImportOptions {
        upstream,
        name_prefix,
    };
    let out =
        openapi::import(&doc, &opts).map_err(|e| anyhow::anyhow!("{}: {e}", spec.display()))?;
    for n in &out.notes {
        eprintln!("note: {n}");
    }
    print!("{}", out.toml);
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, ValueEnum)]
enum HashKind {
    Password,
    Key,
}

/// Reads one line from stdin and prints its hash.
fn hash(what: HashKind) -> anyhow::Result<ExitCode> {
    use gatehouse_core::filter::auth;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let secret = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!secret.is_empty(), "give the secret on standard input");
    let out = match what {
        HashKind::Password => auth::hash_password(secret.as_bytes()).map_err(anyhow::Error::msg)?,
        HashKind::Key => auth::hash_key(secret.as_bytes()),
    };
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    // Taken first: an upgrade may replace the file at this path while we run.
    let exe = std::env::current_exe();
    let cli = Cli::parse();
    init_logging(&cli.log_level, cli.log_format);
    let result = match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config, watch } => exe
            .context("cannot tell this binary's path")
            .and_then(|exe| run(config, watch, exe)),
        Command::Upgrade { pid } => signals::send_upgrade(pid),
        Command::Hash { what } => hash(what),
        Command::Import {
            kind: ImportKind::Openapi,
            spec,
            upstream,
            name_prefix,
        } => import(&spec, upstream, name_prefix),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

fn check(path: &PathBuf) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let parsed =
        gatehouse_core::gateway::parse(&text, &path.display().to_string()).and_then(|spec| {
            let file_errors = gatehouse_core::gateway::check_files(&spec);
            let shown = path.display();
            match file_errors.is_empty() {
                true => Ok(spec),
                false => Err(gatehouse_core::gateway::LoadErrors(
                    file_errors
                        .into_iter()
                        .map(|e| format!("{shown}: {e}"))
                        .collect(),
                )),
            }
        });
    match parsed {
        Ok(spec) => {
            for w in &spec.warnings {
                println!("{}: warning: {w}", path.display());
            }
            println!(
                "{}: ok ({} listeners, {} routes, {} upstreams)",
                path.display(),
                spec.listeners.len(),
                spec.routes.len(),
                spec.upstreams.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            for line in &e.0 {
                println!("{line}");
            }
            println!(
                "{} error{}",
                e.0.len(),
                if e.0.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run(config: PathBuf, watch: bool, exe: PathBuf) -> anyhow::Result<ExitCode> {
    // The worker count must be known before the runtime exists, so read it up front;
    // a reload cannot change it.
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let spec = gatehouse_core::gateway::parse(&text, &config.display().to_string())
        .map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    let workers = spec.global.workers;
    let rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        let (inherited, handshake) = match upgrade::receive().map_err(|e| anyhow::anyhow!(e))? {
            Some((i, h)) => (Some(i), Some(h)),
            None => (None, None),
        };
        let gw = Gateway::start_inheriting(Source::File(config.clone()), inherited)
            .await
            .map_err(|e| anyhow::anyhow!("cannot start:\n{e}"))?;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            workers,
            pid = std::process::id(),
            "gatehouse started"
        );
        if let Some(h) = handshake {
            h.ready().context("upgrade: cannot tell the old process")?;
        }
        if watch {
            let documents = signals::documents_now(&gw);
            tokio::spawn(signals::watch_file(
                config,
                gw.clone(),
                text.into_bytes(),
                documents,
            ));
        }
        signals::until_shutdown(&gw, &exe).await?;
        tracing::info!("shutting down: draining connections");
        let clean = gw.shutdown().await;
        tracing::info!(clean, "stopped");
        Ok(ExitCode::SUCCESS)
    })
}
