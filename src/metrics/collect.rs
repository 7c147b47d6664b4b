//! Collecting the workers' counters for one scrape: ask each worker through its inbox,
//! wait a bounded time, merge what came back.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::StatsReport;
use crate::worker::inbox::{WorkerLink, WorkerMsg};

/// The admin thread's way to reach every worker. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Collector {
    links: Arc<[WorkerLink]>,
}

/// The merged counters of one scrape.
pub struct Collected {
    pub report: StatsReport,
    /// Workers the process started with.
    pub workers: usize,
    /// Workers that answered in time. Fewer than `workers` (one stuck, or ended in a
    /// drain) means the counters are short of those workers' share this time: Prometheus
    /// sees a dip, as for a counter reset.
    pub answered: usize,
}

impl Collector {
    /// A collector with its own links to the workers behind `links` (`Running::links`).
    pub fn new(links: &[WorkerLink]) -> io::Result<Collector> {
        let links = links
            .iter()
            .map(WorkerLink::try_clone)
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Collector {
            links: links.into(),
        })
    }

    /// Asks every worker for its counters and merges the answers that arrive within
    /// `wait`. A worker that does not answer in time is left out, never waited for longer.
    pub fn collect(&self, wait: Duration) -> Collected {
        let deadline = Instant::now() + wait;
        // Room for every answer: a worker's `try_send` never finds it full.
        let (tx, rx) = crossbeam_channel::bounded(self.links.len().max(1));
        let asked = self
            .links
            .iter()
            .filter(|link| link.send(WorkerMsg::Report(tx.clone())).is_ok())
            .count();
        drop(tx);
        let mut report = StatsReport::default();
        let mut answered = 0;
        while answered < asked {
            match rx.recv_deadline(deadline) {
                Ok(one) => {
                    report.merge(&one);
                    answered += 1;
                }
                // Timed out, or every worker that still held a sender is gone.
                Err(_) => break,
            }
        }
        Collected {
            report,
            workers: self.links.len(),
            answered,
        }
    }
}
