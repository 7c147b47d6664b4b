//! The log thread: the only thread that writes the access log and the error log.
//!
//! Who owns what:
//! - **workers** own their access buffers (`log::access::LocalAccessLog`) and hand full ones
//!   over; **any thread** formats its own error lines (`log::write`). Both reach this thread
//!   through the `log::Sink` channels with `try_send`, so nobody ever waits for it.
//! - **this thread** owns the open outputs (files opened append + create, or stdout or
//!   stderr), writes every batch and line, sends emptied buffers back for reuse, and swaps
//!   outputs when told to.
//! - **the control thread** owns the [`LogHandle`]. It opens files itself (so a path that
//!   cannot be opened is an error it reports, at start-up or on reload, while the old files
//!   keep being written) and passes them over: [`LogHandle::reopen`] on SIGUSR1 (logrotate
//!   moves the file, then signals), [`LogHandle::apply`] on reload, and
//!   [`LogHandle::flush_and_stop`] at exit.
//!
//! Error lines written to a file get a timestamp; on stderr they do not (journald and
//! container runtimes add their own).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender, select};

use crate::log::{Drain, Sink};
use crate::snapshot::{LogSettings, LogTarget};

/// Longest the control thread waits for the log thread to confirm a command.
const CONFIRM_WITHIN: Duration = Duration::from_secs(5);
/// Longest the exit path waits for workers to hand over their buffered lines (they do on
/// their 1-second tick).
const WORKER_FLUSH_WITHIN: Duration = Duration::from_millis(1500);

/// Starts the log thread.
pub struct LogThread;

impl LogThread {
    /// Opens the outputs `settings` names, starts the thread, and installs its sink as the
    /// process's (workers started afterwards feed it; error lines go through it from now on).
    pub fn start(settings: &LogSettings) -> io::Result<LogHandle> {
        let handle = LogThread::spawn(settings, crate::log::process_counters())?;
        crate::log::install(handle.sink.clone());
        Ok(handle)
    }

    /// Like [`LogThread::start`] without installing the sink (for tests: a private thread).
    pub fn spawn(
        settings: &LogSettings,
        counters: &'static crate::log::Counters,
    ) -> io::Result<LogHandle> {
        crate::log::set_level(settings.level);
        let outputs = Outputs::open(settings)?;
        let (sink, drain) = crate::log::channel(counters);
        let (commands, rx) = crossbeam_channel::bounded(4);
        let thread = std::thread::Builder::new()
            .name("ringway-log".into())
            .spawn(move || run(outputs, drain, rx))?;
        Ok(LogHandle {
            commands,
            thread: Some(thread),
            sink,
            access: settings.access_log.clone(),
            error: settings.error_log.clone(),
        })
    }
}

/// The control thread's side of the log thread.
#[derive(Debug)]
pub struct LogHandle {
    commands: Sender<Command>,
    thread: Option<JoinHandle<()>>,
    sink: Sink,
    /// What the outputs are now (for reopen).
    access: Option<LogTarget>,
    error: LogTarget,
}

enum Command {
    /// Write out what is queued to the old outputs, then use these.
    Swap { outputs: Outputs, done: Sender<()> },
    /// Write out what is queued and exit.
    Stop { done: Sender<()> },
}

impl LogHandle {
    /// A sender for this thread's channels (the process's sink when started with `start`).
    pub fn sink(&self) -> Sink {
        self.sink.clone()
    }

    /// Reopens the log files at their paths (SIGUSR1): after logrotate's `mv`, new lines go
    /// to a new file; lines queued before the reopen go to the moved one. If a file cannot
    /// be opened, the old outputs stay and the error is returned.
    pub fn reopen(&self) -> io::Result<()> {
        let outputs = Outputs::open_targets(self.access.as_ref(), &self.error)?;
        self.swap(outputs)
    }

    /// Switches to `settings` (a reload): level at once, outputs once the new files are
    /// open. The access format needs nothing here: workers render with the snapshot of the
    /// request. On error nothing changes.
    pub fn apply(&mut self, settings: &LogSettings) -> io::Result<()> {
        let outputs = Outputs::open(settings)?;
        self.swap(outputs)?;
        crate::log::set_level(settings.level);
        self.access = settings.access_log.clone();
        self.error = settings.error_log.clone();
        Ok(())
    }

    fn swap(&self, outputs: Outputs) -> io::Result<()> {
        let (done, confirmed) = crossbeam_channel::bounded(1);
        self.commands
            .send(Command::Swap { outputs, done })
            .map_err(|_| io::Error::other("the log thread has stopped"))?;
        confirmed
            .recv_timeout(CONFIRM_WITHIN)
            .map_err(|_| io::Error::other("the log thread did not confirm"))
    }

    /// At exit: waits (bounded) for workers to hand over their buffered lines, then has the
    /// log thread write everything queued and stop. Blocking; call on the control thread.
    /// Error lines logged afterwards go to stderr.
    pub fn flush_and_stop(mut self) {
        crate::log::access::wait_flushed(WORKER_FLUSH_WITHIN);
        self.stop();
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let (done, confirmed) = crossbeam_channel::bounded(1);
        if self.commands.send(Command::Stop { done }).is_ok()
            && confirmed.recv_timeout(CONFIRM_WITHIN).is_ok()
        {
            let _ = thread.join();
        }
    }
}

impl Drop for LogHandle {
    /// A handle dropped without `flush_and_stop` (start-up failed after the log thread
    /// started) still writes out what is queued: the lines that say what went wrong.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where each log goes, as the log thread holds it.
struct Outputs {
    /// `None`: the access log is off (batches still queued are discarded).
    access: Option<Output>,
    error: Output,
}

enum Output {
    Stdout,
    Stderr,
    File(File),
}

impl Outputs {
    fn open(settings: &LogSettings) -> io::Result<Outputs> {
        Outputs::open_targets(settings.access_log.as_ref(), &settings.error_log)
    }

    fn open_targets(access: Option<&LogTarget>, error: &LogTarget) -> io::Result<Outputs> {
        Ok(Outputs {
            access: access.map(Output::open).transpose()?,
            error: Output::open(error)?,
        })
    }
}

impl Output {
    fn open(target: &LogTarget) -> io::Result<Output> {
        Ok(match target {
            LogTarget::Stdout => Output::Stdout,
            LogTarget::Stderr => Output::Stderr,
            LogTarget::File(path) => Output::File(open_append(path)?),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Output::Stderr => io::stderr().lock().write_all(bytes),
            Output::File(file) => file.write_all(bytes),
        }
    }
}

/// Opens `path` for appending, creating it (nginx's mode: what the umask leaves of 0644).
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The thread's loop: write what arrives until told to stop.
fn run(mut outputs: Outputs, drain: Drain, commands: Receiver<Command>) {
    let mut writer = Writer::default();
    loop {
        select! {
            recv(drain.access) -> batch => {
                if let Ok(batch) = batch {
                    writer.access(&mut outputs, batch, &drain);
                }
            }
            recv(drain.errors) -> line => {
                if let Ok(line) = line {
                    writer.error(&mut outputs, &line);
                }
            }
            recv(commands) -> command => {
                writer.drain(&mut outputs, &drain);
                match command {
                    Ok(Command::Swap { outputs: new, done }) => {
                        outputs = new;
                        let _ = done.send(());
                    }
                    Ok(Command::Stop { done }) => {
                        let _ = done.send(());
                        return;
                    }
                    // The handle is gone: nobody can stop us later, so stop now.
                    Err(_) => return,
                }
            }
        }
    }
}

/// Writes batches and lines, and says once (on stderr) when an output starts failing.
#[derive(Default)]
struct Writer {
    failing: bool,
    stamp: Vec<u8>,
}

impl Writer {
    fn access(&mut self, outputs: &mut Outputs, mut batch: Vec<u8>, drain: &Drain) {
        if let Some(out) = &mut outputs.access {
            let result = out.write(&batch);
            self.report("access log", result);
        }
        batch.clear();
        // A full return queue means workers have spares enough: let this one go.
        let _ = drain.spare.try_send(batch);
    }

    fn error(&mut self, outputs: &mut Outputs, line: &[u8]) {
        let result = match &mut outputs.error {
            Output::File(file) => {
                self.stamp.clear();
                crate::http::vars::time_iso8601(SystemTime::now(), &mut self.stamp);
                self.stamp.push(b' ');
                self.stamp.extend_from_slice(line);
                file.write_all(&self.stamp)
            }
            other => other.write(line),
        };
        self.report("error log", result);
    }

    /// Writes everything already queued (before a swap or a stop).
    fn drain(&mut self, outputs: &mut Outputs, drain: &Drain) {
        while let Ok(line) = drain.errors.try_recv() {
            self.error(outputs, &line);
        }
        while let Ok(batch) = drain.access.try_recv() {
            self.access(outputs, batch, drain);
        }
    }

    fn report(&mut self, what: &str, result: io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                let _ = writeln!(io::stderr(), "ringway: cannot write the {what}: {e}");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
#[path = "log_thread_tests.rs"]
mod tests;
