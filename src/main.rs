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
    /// Only demo backends, on the given addresses (for benchmarks and experiments).
    Backend {
        /// Address to serve on; repeat for several.
        #[arg(long = "bind", required = true)]
        bind: Vec<SocketAddr>,
    },
    /// Convert an nginx configuration (nginx.conf or a conf.d/ file) to ringway TOML.
    ImportNginx {
        /// The nginx file; its includes are followed.
        file: PathBuf,
        /// Where to write the TOML (default: stdout).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// Convert an HAProxy configuration to ringway TOML.
    ImportHaproxy {
        /// The haproxy.cfg file.
        file: PathBuf,
        /// Where to write the TOML (default: stdout).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
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
        Some(Command::Backend { bind }) => backend(bind),
        Some(Command::ImportNginx { file, output }) => {
            import(ringway::import::nginx(&file), output.as_deref())
        }
        Some(Command::ImportHaproxy { file, output }) => {
            import(ringway::import::haproxy(&file), output.as_deref())
        }
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

fn backend(bind: Vec<SocketAddr>) -> Result<(), String> {
    let handle = ringway::demo::spawn_backends(bind).map_err(|e| e.to_string())?;
    ringway::control::wait_for_stop();
    drop(handle);
    Ok(())
}

/// Prints every notice to stderr, then writes the TOML to `output` (or stdout).
fn import(
    result: Result<ringway::import::Import, ringway::import::ImportError>,
    output: Option<&std::path::Path>,
) -> Result<(), String> {
    let done = result.map_err(|e| e.to_string())?;
    for notice in &done.notes.list {
        eprintln!("{notice}");
    }
    let warnings = done.notes.warnings().count();
    match output {
        Some(path) => std::fs::write(path, &done.toml)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => print!("{}", done.toml),
    }
    eprintln!(
        "ringway: converted with {warnings} warning(s) and {} note(s); check with: ringway -t -c {}",
        done.notes.list.len() - warnings,
        output.map_or("FILE".into(), |p| p.display().to_string())
    );
    Ok(())
}
