//! Turns a [`RawConfig`] into a [`Snapshot`]: applies the nginx-like defaults and checks every
//! value, recording each problem in the [`Report`] and carrying on, so one run finds them all.
//! Listeners and upstream groups have their own files; this one holds the rest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::check::{Zero, resolve};
use super::listener::listeners;
use super::raw::{RawAdmin, RawConfig, RawDriver, RawLevel, RawLog, RawRuntime};
use super::source::{Report, join};
use super::units::Workers;
use super::upstream::groups;
use crate::snapshot::{
    AdminSettings, Driver, LogLevel, LogSettings, LogTarget, RuntimeSettings, Snapshot,
};
use crate::template::Template;

/// nginx's `combined` log format (we never know `$remote_user`, so it is always `-`).
pub const COMBINED_FORMAT: &str = "$remote_addr - - [$time_local] \"$request\" $status \
                                   $body_bytes_sent \"$http_referer\" \"$http_user_agent\"";
/// `combined` plus the server that answered.
pub const UPSTREAM_FORMAT: &str = "$remote_addr - - [$time_local] \"$request\" $status \
                                   $body_bytes_sent \"$http_referer\" \"$http_user_agent\" \
                                   to: $upstream_addr";
/// A tcp connection's line (`log.tcp_access_format`): nginx stream's `basic` format plus
/// the server and its connect time.
pub const TCP_FORMAT: &str = "$remote_addr [$time_local] TCP $status $bytes_sent \
                              $bytes_received $session_time \"$upstream_addr\" \
                              \"$upstream_connect_time\"";

/// Upper bound on `runtime.workers`: far above any core count we run on.
const MAX_WORKERS: i64 = 1024;

/// Builds the snapshot. Its value is meaningless when `report` gained errors.
pub fn build(
    raw: &RawConfig,
    report: &mut Report<'_, '_>,
    path: &Path,
    generation: u64,
) -> Snapshot {
    let groups = groups(report, raw.upstreams.as_ref(), workers_wanted(raw));
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    let listeners = listeners(report, raw.listener.as_deref(), &names, &groups);
    let admin = raw.admin.as_ref().and_then(|a| {
        let settings = admin(report, a.get_ref(), &a.span())?;
        let clash = listeners
            .iter()
            .find(|l| l.bind == settings.bind && l.bind.port() != 0);
        if let (Some(l), Some(bind)) = (clash, &a.get_ref().bind) {
            let message = format!(
                "address {} is already used by listener {:?}",
                l.bind, l.name
            );
            report.at(&bind.span(), "admin.bind", message);
        }
        Some(settings)
    });
    let mut snapshot = Snapshot {
        generation,
        source: path.to_path_buf(),
        runtime: runtime(report, raw.runtime.as_ref().map(|r| r.get_ref())),
        log: log(report, raw.log.as_ref().map(|l| l.get_ref())),
        admin,
        listeners,
        groups,
    };
    snapshot.find_needs();
    snapshot
}

/// The workers the config asks for, before `runtime` checks the value (and reports what is
/// wrong with it): the balancer splits its per-server counts by worker.
fn workers_wanted(raw: &RawConfig) -> usize {
    let workers = raw
        .runtime
        .as_ref()
        .and_then(|r| r.get_ref().workers.as_ref());
    match workers.map(|w| *w.get_ref()) {
        Some(Workers::Count(n)) if (1..=MAX_WORKERS).contains(&n) => n as usize,
        _ => online_cores(),
    }
}

fn runtime(r: &mut Report<'_, '_>, raw: Option<&RawRuntime>) -> RuntimeSettings {
    let default = RawRuntime::default();
    let raw = raw.unwrap_or(&default);
    let workers = match raw.workers.as_ref().map(|w| (*w.get_ref(), w.span())) {
        None | Some((Workers::Auto, _)) => online_cores(),
        Some((Workers::Count(n), _)) if (1..=MAX_WORKERS).contains(&n) => n as usize,
        Some((Workers::Count(n), span)) => {
            let message = format!("must be \"auto\" or between 1 and {MAX_WORKERS}, found {n}");
            r.at(&span, "runtime.workers", message);
            1
        }
    };
    let pid_file = raw.pid_file.as_ref().and_then(|p| {
        if p.get_ref().is_empty() {
            r.at(
                &p.span(),
                "runtime.pid_file",
                "must not be empty (leave it out for no pid file)",
            );
        }
        (!p.get_ref().is_empty()).then(|| PathBuf::from(p.get_ref()))
    });
    RuntimeSettings {
        workers,
        pin_workers: raw.pin_workers.unwrap_or(true),
        driver: match raw.driver.unwrap_or(RawDriver::Auto) {
            RawDriver::Auto => Driver::Auto,
            RawDriver::IoUring => Driver::IoUring,
            RawDriver::Epoll => Driver::Epoll,
        },
        pid_file,
        shutdown_timeout: r.dur(
            &raw.shutdown_timeout,
            "runtime.shutdown_timeout",
            Duration::from_secs(30),
            Zero::Allowed,
        ),
        shutdown_delay: r.dur(
            &raw.shutdown_delay,
            "runtime.shutdown_delay",
            Duration::ZERO,
            Zero::Allowed,
        ),
        max_connections: r.int(
            &raw.max_connections,
            "runtime.max_connections",
            100_000,
            1..=100_000_000,
        ) as usize,
    }
}

/// `workers = "auto"`: one event loop per core this process may run on.
fn online_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn log(r: &mut Report<'_, '_>, raw: Option<&RawLog>) -> LogSettings {
    let default = RawLog::default();
    let raw = raw.unwrap_or(&default);
    let level = match raw.level.unwrap_or(RawLevel::Info) {
        RawLevel::Error => LogLevel::Error,
        RawLevel::Warn => LogLevel::Warn,
        RawLevel::Info => LogLevel::Info,
        RawLevel::Debug => LogLevel::Debug,
    };
    let error_log = match raw.error_log.as_ref() {
        None => LogTarget::Stderr,
        Some(v) if v.get_ref() == "off" => {
            let message =
                "cannot be \"off\": use \"stderr\" or a file path (and `level` to log less)";
            r.at(&v.span(), "log.error_log", message);
            LogTarget::Stderr
        }
        Some(v) => log_target(r, v, "log.error_log").unwrap_or(LogTarget::Stderr),
    };
    let access_log = match raw.access_log.as_ref() {
        Some(v) if v.get_ref() != "off" => log_target(r, v, "log.access_log"),
        _ => None,
    };
    let access_format = format(r, raw.access_format.as_ref(), "log.access_format");
    let tcp_access_format = match raw.tcp_access_format.as_ref() {
        None => Template::parse(TCP_FORMAT).unwrap_or(Template { parts: Vec::new() }),
        given => format(r, given, "log.tcp_access_format"),
    };
    LogSettings {
        level,
        error_log,
        access_log,
        access_format,
        tcp_access_format,
    }
}

/// An access format as written: "combined", "upstream" or a template.
fn format(r: &mut Report<'_, '_>, v: Option<&toml::Spanned<String>>, key: &str) -> Template {
    let Some(v) = v else { return combined() };
    let text = match v.get_ref().as_str() {
        "combined" => COMBINED_FORMAT,
        "upstream" => UPSTREAM_FORMAT,
        other => other,
    };
    Template::parse(text).unwrap_or_else(|e| {
        r.at(&v.span(), key, format!("invalid template: {e}"));
        combined()
    })
}

fn combined() -> Template {
    Template::parse(COMBINED_FORMAT).unwrap_or(Template { parts: Vec::new() })
}

fn log_target(r: &mut Report<'_, '_>, v: &toml::Spanned<String>, key: &str) -> Option<LogTarget> {
    match v.get_ref().as_str() {
        "stderr" => Some(LogTarget::Stderr),
        "stdout" => Some(LogTarget::Stdout),
        "" => {
            r.at(
                &v.span(),
                key,
                "must be \"stderr\", \"stdout\", \"off\" or a file path",
            );
            None
        }
        path => Some(LogTarget::File(PathBuf::from(path))),
    }
}

fn admin(
    r: &mut Report<'_, '_>,
    raw: &RawAdmin,
    span: &std::ops::Range<usize>,
) -> Option<AdminSettings> {
    let bind = r.required(&raw.bind, span, "admin", "bind")?;
    match resolve(bind.get_ref(), Zero::Allowed) {
        Ok(bind) => Some(AdminSettings { bind }),
        Err(e) => {
            r.at(&bind.span(), &join("admin", "bind"), e);
            None
        }
    }
}
