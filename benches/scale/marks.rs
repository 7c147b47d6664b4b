//! Micro-benchmark of what two workers share per request: `Peers::pick`, `try_begin` and
//! `end` on one group, from one thread and from two threads on different CPUs at once.
//!
//! Each thread keeps [`IN_FLIGHT`] requests open, as a busy worker does: every step ends the
//! oldest and picks and begins a new one. If the per-request writes land on cache lines the
//! other thread also writes (or reads on every pick), each step with two threads pays for the
//! lines moving between the cores and costs more than with one; per-core state costs the same.
//! A tight loop is the worst case: a real request does tens of µs of other work between these
//! calls, so the end-to-end cost is this difference times two calls, not a multiple.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use ringway::balance::{LocalCursor, Peers, Pick, PickKey, Policy, Server, Tried};

/// Requests each thread keeps open.
const IN_FLIGHT: usize = 32;
/// Steps per thread and repetition.
const STEPS: usize = 1_000_000;
const REPETITIONS: usize = 9;

fn group(policy: Policy) -> Peers {
    let servers = (0..2u16)
        .map(|i| Server {
            addr: SocketAddr::from(([127, 0, 0, 1], 9000 + i)),
            weight: 1,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            backup: false,
            down: false,
            max_conns: 0,
        })
        .collect();
    // One lane per thread, as a two-worker ringway has (see `marks.rs`).
    Peers::new(policy, servers).with_workers(2)
}

/// CPU time of the calling thread: a step stalled on a cache line moving between cores
/// counts, time other processes of a shared machine take from the thread does not.
fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime writes only into the timespec it is given.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
        ts
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Pins the calling thread to `cpu` (best effort: unpinned if the kernel refuses).
fn pin(cpu: usize) {
    // SAFETY: the set is initialised by CPU_ZERO before use and only read by the call.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// CPU ns per step of the slowest of `groups.len()` threads, thread t on CPU t working on
/// `groups[t]`, all starting together: the same group twice to share it, two groups for
/// the same work with nothing shared.
fn measure(groups: &[Arc<Peers>]) -> f64 {
    let start = Arc::new(Barrier::new(groups.len()));
    let handles: Vec<_> = (0..groups.len())
        .map(|t| {
            let (peers, start) = (groups[t].clone(), start.clone());
            std::thread::spawn(move || {
                pin(t);
                ringway::balance::enter_worker(t);
                let mut cursor = LocalCursor::new(&peers, t as u64);
                let tried = Tried::default();
                let mut open = [usize::MAX; IN_FLIGHT];
                start.wait();
                let began = thread_cpu();
                for step in 0..STEPS {
                    let slot = &mut open[step % IN_FLIGHT];
                    if *slot != usize::MAX {
                        peers.end(*slot);
                    }
                    *slot = match peers.pick(&mut cursor, PickKey::None, &tried, 1) {
                        Pick::Server(idx) if peers.try_begin(idx) => black_box(idx),
                        _ => usize::MAX,
                    };
                }
                let elapsed = thread_cpu().saturating_sub(began);
                open.iter()
                    .filter(|&&idx| idx != usize::MAX)
                    .for_each(|&idx| peers.end(idx));
                elapsed.as_nanos() as f64 / STEPS as f64
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap_or(f64::NAN))
        .fold(0.0, f64::max)
}

pub fn run() -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        return Err("marks needs two CPUs".into());
    }
    let mut text = format!(
        "## Shared balancer state: CPU ns per request step (pick + try_begin + end), {IN_FLIGHT} \
         requests open per thread, {STEPS} steps, median of {REPETITIONS}\n\n\
         | policy | 1 thread | 2 threads (CPUs 0, 1), one group each | 2 threads, one shared \
         group | shared ÷ one each |\n|---|---:|---:|---:|---:|\n"
    );
    for policy in [Policy::RoundRobin, Policy::LeastConn] {
        let shared = Arc::new(group(policy));
        let apart = [Arc::new(group(policy)), Arc::new(group(policy))];
        let (mut one, mut each, mut both) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..REPETITIONS {
            crate::procs::check_interrupted()?;
            one.push(measure(std::slice::from_ref(&shared)));
            each.push(measure(&apart));
            both.push(measure(&[shared.clone(), shared.clone()]));
        }
        let [one, each, both] = [one, each, both].map(|v| crate::measure::median(&v));
        text.push_str(&format!(
            "| {policy:?} | {one:.1} | {each:.1} | {both:.1} | {:.2} |\n",
            both / each
        ));
        if (0..2).any(|idx| shared.active(idx) != 0) {
            return Err(format!("{policy:?}: requests left counted after the run"));
        }
    }
    println!("{text}");
    Ok(())
}
