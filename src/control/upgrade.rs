//! Binary upgrade (SIGUSR2, `ringway -s upgrade`): start the binary at this process's path
//! with the same arguments, hand it every listening socket, and once it serves, drain.
//!
//! The new process finds its sockets in `RINGWAY_LISTEN_FDS` (see [`super::listeners`]),
//! so connections waiting in the accept queues are never lost, and reports that it serves
//! (workers started, pid file written) by writing one byte to the pipe named by
//! `RINGWAY_READY_FD`. If it exits, closes the pipe without a word, or takes longer than
//! [`START_TIMEOUT`], this process keeps serving and says why.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::Control;
use super::listeners::LISTEN_FDS_ENV;
use super::signals::{self, Request};

/// Names the pipe on which a new binary reports that it serves.
pub const READY_FD_ENV: &str = "RINGWAY_READY_FD";
/// How long a new binary may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// Starts the new binary and waits until it serves. Returns true when it does (this process
/// should now drain), false when it failed (this process keeps serving).
pub fn upgrade(ctl: &Control) -> bool {
    match start_new_binary(ctl) {
        Ok(pid) => {
            crate::info!("upgrade: new process {pid} serves; draining this one");
            true
        }
        Err(why) => {
            crate::error!("upgrade failed, this process keeps serving: {why}");
            false
        }
    }
}

fn start_new_binary(ctl: &Control) -> Result<u32, String> {
    let exe = ctl
        .exe
        .as_ref()
        .ok_or("the path of the running binary is unknown")?;
    let (ready_read, ready_write) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (mut sockets, mut inherit) = ctl.listeners.export();
    if let Some(admin) = &ctl.admin {
        let (bind, fd) = admin.export();
        sockets.push_str(&format!(";{bind}={fd}"));
        inherit.push(fd);
    }
    inherit.push(ready_write.as_raw_fd());
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env(LISTEN_FDS_ENV, sockets)
        .env(READY_FD_ENV, ready_write.as_raw_fd().to_string());
    // SAFETY: between fork and exec only async-signal-safe calls (fcntl) on descriptors
    // this process owns: they are made inheritable for the new binary only.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    drop(ready_write);
    let pid = child.id();
    crate::info!("upgrade: started {} as process {pid}", exe.display());
    match wait_ready(&mut child, ready_read) {
        Ok(()) => Ok(pid),
        Err(why) => {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            Err(format!("new process {pid}: {why}"))
        }
    }
}

/// Waits for the ready byte, the child's exit, a stop signal, or the timeout.
fn wait_ready(child: &mut Child, ready: OwnedFd) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut pipe = std::fs::File::from(ready);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("exited during start-up ({status})"));
        }
        let mut byte = [0u8; 1];
        match pipe.read(&mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) => {
                let status = child.wait().map_err(|e| e.to_string())?;
                return Err(format!("exited during start-up ({status})"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("ready pipe: {e}")),
        }
        if Instant::now() >= deadline {
            return Err(format!("did not serve within {START_TIMEOUT:?}"));
        }
        if signals::wait(POLL) == Some(Request::Stop) {
            return Err("a stop signal arrived during the upgrade".into());
        }
    }
}

/// A non-blocking read end and a blocking write end, both close-on-exec.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(read.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(read.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    Ok((read, write))
}

/// In a process started by an upgrade, the pipe on which to tell the old process that
/// this one serves.
pub struct ReadyPipe(std::fs::File);

impl ReadyPipe {
    /// Takes the pipe named by [`READY_FD_ENV`]. Call on the main thread before any other
    /// thread starts (it clears the variable).
    pub fn from_env() -> Option<ReadyPipe> {
        let fd = std::env::var(READY_FD_ENV).ok()?.parse::<RawFd>().ok()?;
        // SAFETY: no other thread exists yet (see above).
        unsafe { std::env::remove_var(READY_FD_ENV) };
        // SAFETY: fcntl(F_GETFD) only asks whether the descriptor is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return None;
        }
        // SAFETY: the old process passed this open descriptor to us and nothing else here
        // owns it; it is closed once the byte is written.
        Some(ReadyPipe(std::fs::File::from(unsafe {
            OwnedFd::from_raw_fd(fd)
        })))
    }

    /// Says "serving" and closes the pipe.
    pub fn report(mut self) {
        let _ = std::io::Write::write_all(&mut self.0, b"1");
    }
}
