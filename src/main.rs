//! The `ringway` command line: run, check (`-t`), signal (`-s`), `demo`, `backend`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A load-balancing reverse proxy: one io_uring event loop per core, HTTP/1.x and TCP.
#[derive(Parser)]
#[command(name = "ringway", version, about)]
struct Cli {
    /// Configuration file.
    #[arg(
        short = 'c',
        long = "config",
        default_value = "/etc/ringway/ringway.toml"
    )]
    config: PathBuf,
    /// Check the configuration, print `configuration ok` or every error, and exit.
    #[arg(short = 't', long = "test")]
    test: bool,
    /// Signal the running instance named by `runtime.pid_file`: reload, stop, quit, reopen, upgrade.
    #[arg(short = 's', long = "signal", value_name = "SIGNAL")]
    signal: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Three demo LLM backends on 127.0.0.1:1701-1703 and a proxy on 127.0.0.1:1700.
    Demo,
    /// Only demo backends, on the given addresses (for benchmarks and experiments); with
    /// `--llm`, simulated OpenAI-compatible LLM servers.
    Backend {
        /// Address to serve on; repeat for several (with `--llm`, each is its own server).
        #[arg(long = "bind", required = true)]
        bind: Vec<SocketAddr>,
        /// Serve a simulated LLM server (vLLM-like) instead of the demo paths.
        #[arg(long = "llm")]
        llm: bool,
        #[command(flatten)]
        sim: SimArgs,
    },
}

/// The simulated LLM server's flags (`ringway backend --llm`); defaults resemble an 8B
/// model on one GPU, 10x faster (see the README, "LLM server simulator").
#[derive(clap::Args)]
struct SimArgs {
    /// Model name served; a request naming another model gets 404.
    #[arg(long, requires = "llm", default_value = "ringway-sim")]
    model: String,
    /// Requests in the batch at once; more wait in the server's queue.
    #[arg(long, requires = "llm", default_value_t = 32)]
    slots: usize,
    /// Prefill time per prompt byte not in the prefix cache, in microseconds.
    #[arg(long, requires = "llm", default_value_t = 2.0)]
    prefill_us_per_byte: f64,
    /// Decode time per generated token, in milliseconds.
    #[arg(long, requires = "llm", default_value_t = 2.0)]
    decode_ms_per_token: f64,
    /// Tokens generated when a request does not set max_tokens.
    #[arg(long, requires = "llm", default_value_t = 128)]
    max_tokens: u32,
    /// Prefix cache size in bytes of prompt (k, m, g suffixes); 0 turns it off.
    #[arg(long, requires = "llm", default_value = "2m", value_parser = size)]
    cache_bytes: u64,
    /// Prefix cache block size in bytes.
    #[arg(long, requires = "llm", default_value_t = 64)]
    block_bytes: usize,
    /// ok, hang (take requests, never answer; /health stays 200), 429 or 503 (refuse
    /// with Retry-After). `POST /admin/mode` changes it at run time.
    #[arg(long, requires = "llm", default_value = "ok", value_parser = ringway::llm_sim::Mode::parse)]
    fail_mode: ringway::llm_sim::Mode,
    /// Seconds in the Retry-After of a 429 or 503.
    #[arg(long, requires = "llm", default_value_t = 1)]
    retry_after: u32,
    /// Largest request body (k, m, g suffixes); 413 beyond.
    #[arg(long, requires = "llm", default_value = "64m", value_parser = size)]
    max_body: u64,
}

fn size(text: &str) -> Result<u64, String> {
    ringway::config::units::parse_size(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = ringway::control::signals::block() {
        eprintln!("ringway: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    // Before any thread starts: sockets and a ready pipe from an upgrading old process.
    let handover = ringway::control::Handover::from_env();
    let result = match cli.command {
        Some(Command::Demo) => ringway::demo::run(),
        Some(Command::Backend { bind, llm, sim }) => backend(bind, llm.then_some(sim)),
        None if cli.test => return check(&cli.config),
        None => match cli.signal {
            Some(name) => signal(&cli.config, &name),
            None => run(&cli.config, handover),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(config: &std::path::Path) -> Result<ringway::snapshot::Snapshot, String> {
    ringway::config::load(config, 1).map_err(|errors| {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn check(config: &std::path::Path) -> ExitCode {
    match load(config) {
        Ok(_) => {
            println!("configuration ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: &std::path::Path, handover: ringway::control::Handover) -> Result<(), String> {
    ringway::serve(load(config)?, handover)
}

fn signal(config: &std::path::Path, name: &str) -> Result<(), String> {
    let snapshot = load(config)?;
    let pid_file = snapshot
        .runtime
        .pid_file
        .ok_or_else(|| format!("{}: runtime.pid_file is not set", config.display()))?;
    ringway::control::send(name, &pid_file)
}

fn backend(bind: Vec<SocketAddr>, llm: Option<SimArgs>) -> Result<(), String> {
    let handle = match llm {
        None => ringway::demo::spawn_backends(bind),
        Some(sim) => {
            let options = ringway::llm_sim::Options {
                model: sim.model,
                slots: sim.slots,
                prefill_us_per_byte: sim.prefill_us_per_byte,
                decode_ms_per_token: sim.decode_ms_per_token,
                max_tokens: sim.max_tokens,
                cache_bytes: sim.cache_bytes,
                block_bytes: sim.block_bytes,
                mode: sim.fail_mode,
                retry_after_secs: sim.retry_after,
                max_body: usize::try_from(sim.max_body).unwrap_or(usize::MAX),
                ..ringway::llm_sim::Options::default()
            };
            options.costs()?;
            ringway::llm_sim::spawn(bind, options)
        }
    }
    .map_err(|e| e.to_string())?;
    ringway::control::wait_for_stop();
    drop(handle);
    Ok(())
}
