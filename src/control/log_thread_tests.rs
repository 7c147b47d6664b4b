//! The log thread against real files: writes, logrotate's move-then-reopen, reload, stop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::*;
use crate::log::{Counters, send_error_line};
use crate::snapshot::LogLevel;
use crate::template::Template;

/// A fresh directory under the temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ringway-log-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn settings(access: Option<PathBuf>, error: PathBuf) -> LogSettings {
    LogSettings {
        level: LogLevel::Info,
        error_log: LogTarget::File(error),
        access_log: access.map(LogTarget::File),
        access_format: Template::parse("$status").unwrap(),
        tcp_access_format: Template::parse("$status").unwrap(),
    }
}

fn spawn(settings: &LogSettings) -> LogHandle {
    LogThread::spawn(settings, Box::leak(Box::new(Counters::new()))).unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits (bounded) until `path` holds `want`.
fn wait_for(path: &Path, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = read(path);
        if text == want || Instant::now() >= deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn batches_and_error_lines_reach_their_files() {
    let dir = Dir::new();
    let (access, error) = (dir.file("access.log"), dir.file("error.log"));
    let log = spawn(&settings(Some(access.clone()), error.clone()));
    let sink = log.sink();
    sink.access.send(b"200\n201\n".to_vec()).unwrap();
    send_error_line(&sink, b"ringway[1]: warn: oops\n".to_vec());
    assert_eq!(wait_for(&access, "200\n201\n"), "200\n201\n");
    let errors = wait_for(&error, "never");
    // `2026-11-21T08:41:44+00:00 ringway[1]: warn: oops`
    assert_eq!(errors.len(), 26 + 23, "{errors:?}");
    assert!(
        errors.ends_with("+00:00 ringway[1]: warn: oops\n"),
        "{errors:?}"
    );
    // The emptied buffer comes back for reuse.
    let spare = sink.spare.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(spare.is_empty() && spare.capacity() >= 8);
}

#[test]
fn reopen_after_a_move_starts_a_new_file() {
    let dir = Dir::new();
    let (access, error) = (dir.file("access.log"), dir.file("error.log"));
    let log = spawn(&settings(Some(access.clone()), error.clone()));
    let sink = log.sink();
    sink.access.send(b"before\n".to_vec()).unwrap();
    assert_eq!(wait_for(&access, "before\n"), "before\n");
    std::fs::rename(&access, dir.file("access.log.1")).unwrap();
    std::fs::rename(&error, dir.file("error.log.1")).unwrap();
    // Written after the move, before the reopen: still the moved file (logrotate's
    // `delaycompress` exists for exactly this).
    sink.access.send(b"moved\n".to_vec()).unwrap();
    log.reopen().unwrap();
    sink.access.send(b"after\n".to_vec()).unwrap();
    send_error_line(&sink, b"e\n".to_vec());
    assert_eq!(wait_for(&access, "after\n"), "after\n");
    assert_eq!(read(&dir.file("access.log.1")), "before\nmoved\n");
    assert!(wait_for(&error, "never").ends_with(" e\n"));
    assert_eq!(read(&dir.file("error.log.1")), "");
}

#[test]
fn apply_switches_files_and_can_turn_the_access_log_off() {
    let dir = Dir::new();
    let (first, second, error) = (dir.file("a1"), dir.file("a2"), dir.file("err"));
    let mut log = spawn(&settings(Some(first.clone()), error.clone()));
    let sink = log.sink();
    sink.access.send(b"one\n".to_vec()).unwrap();
    log.apply(&settings(Some(second.clone()), error.clone()))
        .unwrap();
    sink.access.send(b"two\n".to_vec()).unwrap();
    assert_eq!(wait_for(&second, "two\n"), "two\n");
    assert_eq!(
        read(&first),
        "one\n",
        "queued lines are written before the swap"
    );
    log.apply(&settings(None, error.clone())).unwrap();
    sink.access.send(b"three\n".to_vec()).unwrap();
    log.reopen().unwrap();
    assert_eq!(read(&second), "two\n");
}

#[test]
fn an_unopenable_path_fails_and_keeps_the_old_files() {
    let dir = Dir::new();
    let (access, error) = (dir.file("access.log"), dir.file("error.log"));
    let bad = dir.file("missing-dir").join("access.log");
    let err = LogThread::spawn(
        &settings(Some(bad.clone()), error.clone()),
        Box::leak(Box::new(Counters::new())),
    )
    .unwrap_err();
    assert!(err.to_string().contains("missing-dir"), "{err}");
    let mut log = spawn(&settings(Some(access.clone()), error.clone()));
    assert!(log.apply(&settings(Some(bad), error.clone())).is_err());
    log.sink().access.send(b"kept\n".to_vec()).unwrap();
    assert_eq!(wait_for(&access, "kept\n"), "kept\n");
}

#[test]
fn flush_and_stop_writes_everything_queued() {
    let dir = Dir::new();
    let (access, error) = (dir.file("access.log"), dir.file("error.log"));
    let log = spawn(&settings(Some(access.clone()), error.clone()));
    let sink = log.sink();
    for i in 0..crate::log::ACCESS_QUEUE {
        sink.access.try_send(format!("{i}\n").into_bytes()).unwrap();
    }
    log.flush_and_stop();
    let want: String = (0..crate::log::ACCESS_QUEUE)
        .map(|i| format!("{i}\n"))
        .collect();
    assert_eq!(read(&access), want);
    // The thread is gone: an error line now goes to stderr instead of being lost.
    assert!(sink.errors.try_send(b"x\n".to_vec()).is_err());
}
