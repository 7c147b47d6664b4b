//! Spawns one pinned, named worker thread per core, each with its own monoio runtime and its
//! own SO_REUSEPORT listener sockets, so the kernel spreads connections across workers and no
//! accept queue is shared.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use arc_swap::ArcSwap;

use crate::control::listeners::ListenerSet;
use crate::snapshot::{Driver, Snapshot};
use crate::worker;
use crate::worker::inbox::{self, WorkerLink};

/// Accept backlog per listener socket (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 4096;
/// io_uring submission queue entries per worker.
const URING_ENTRIES: u32 = 4096;

/// The running workers.
pub struct Running {
    pub workers: Vec<JoinHandle<()>>,
    /// The control thread's end of each worker's inbox, same index as `workers`.
    pub links: Vec<WorkerLink>,
    /// Which driver each worker ended up with ("io_uring" or "epoll"), by worker id.
    pub drivers: Vec<&'static str>,
}

/// Starts one worker per `runtime.workers`, each accepting on its share of `listeners`.
/// Returns once every worker has its event loop, or with the first worker's error.
pub fn start(current: Arc<ArcSwap<Snapshot>>, listeners: &ListenerSet) -> io::Result<Running> {
    let snapshot = current.load_full();
    let workers = snapshot.runtime.workers.max(1);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut handles = Vec::with_capacity(workers);
    let mut links = Vec::with_capacity(workers);
    let mut drivers = Vec::with_capacity(workers);
    // One channel per worker, read in worker order: `drivers[id]` is worker `id`'s.
    let mut driver_rxs = Vec::with_capacity(workers);
    for id in 0..workers {
        let sockets = listeners.for_worker(id)?;
        let core = if snapshot.runtime.pin_workers && !cores.is_empty() {
            Some(cores[id % cores.len()])
        } else {
            None
        };
        let (link, inbox) = inbox::pair()?;
        let current = current.clone();
        let driver = snapshot.runtime.driver;
        let (driver_tx, driver_rx) = crossbeam_channel::bounded(1);
        driver_rxs.push(driver_rx);
        let handle = std::thread::Builder::new()
            .name(format!("ringway-w{id}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let work = move |name: &'static str| worker::run(id, name, current, sockets, inbox);
                run_worker(id, driver, work, driver_tx);
            })?;
        handles.push(handle);
        links.push(link);
    }
    for driver_rx in driver_rxs {
        match driver_rx.recv() {
            Ok(Ok(name)) => drivers.push(name),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::Error::other("a worker exited during start-up")),
        }
    }
    Ok(Running {
        workers: handles,
        links,
        drivers,
    })
}

type DriverReport = crossbeam_channel::Sender<io::Result<&'static str>>;

/// Builds this worker's runtime for `driver` and runs `work` on it until it returns.
fn run_worker<W, F>(id: usize, driver: Driver, work: W, report: DriverReport)
where
    W: FnOnce(&'static str) -> F,
    F: std::future::Future<Output = ()>,
{
    use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
    let uring = || {
        // COOP_TASKRUN + SINGLE_ISSUER + DEFER_TASKRUN (6.1+): completion work runs when
        // the loop enters the kernel to wait anyway, in a batch, instead of interrupting
        // this thread for each one (about 6% less CPU per request measured with wrk). An
        // older kernel refuses the flags; then the ring is built without them.
        let mut tuned = io_uring::IoUring::builder();
        tuned
            .setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun();
        RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(URING_ENTRIES)
            .uring_builder(tuned)
            .enable_timer()
            .build()
            .or_else(|e| {
                crate::debug!("io_uring without task-run flags ({e})");
                RuntimeBuilder::<IoUringDriver>::new()
                    .with_entries(URING_ENTRIES)
                    .enable_timer()
                    .build()
            })
    };
    let epoll = || RuntimeBuilder::<LegacyDriver>::new().enable_timer().build();
    let use_uring = match driver {
        Driver::IoUring => true,
        Driver::Epoll => false,
        Driver::Auto => monoio::utils::detect_uring(),
    };
    if use_uring {
        match uring() {
            Ok(mut rt) => {
                let _ = report.send(Ok("io_uring"));
                rt.block_on(work("io_uring"));
            }
            Err(e) if driver == Driver::Auto => match epoll() {
                Ok(mut rt) => {
                    crate::warn!("worker {id}: io_uring unavailable ({e}), using epoll");
                    let _ = report.send(Ok("epoll"));
                    rt.block_on(work("epoll"));
                }
                Err(e) => {
                    let _ = report.send(Err(e));
                }
            },
            Err(e) => {
                let _ = report.send(Err(io::Error::new(e.kind(), format!("io_uring: {e}"))));
            }
        }
    } else {
        match epoll() {
            Ok(mut rt) => {
                let _ = report.send(Ok("epoll"));
                rt.block_on(work("epoll"));
            }
            Err(e) => {
                let _ = report.send(Err(e));
            }
        }
    }
}

/// A listening socket with SO_REUSEADDR and SO_REUSEPORT, non-blocking, close-on-exec.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket we just created and own; TcpListener closes it on drop.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        // SAFETY: valid fd, pointer to a live c_int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a sockaddr of `len` bytes for this address family.
    if unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: valid, bound socket.
    if unsafe { libc::listen(fd, BACKLOG) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(listener)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            (
                storage,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            (
                storage,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sockets_share_one_port_with_reuseport() {
        let a = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = a.local_addr().unwrap();
        let b = bind_reuseport(port).unwrap();
        assert_eq!(b.local_addr().unwrap(), port);
    }

    #[test]
    fn binding_a_port_held_without_reuseport_fails_clearly() {
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind_reuseport(plain.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
