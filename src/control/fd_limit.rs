//! The descriptor limit: raised to what the system allows, and said plainly when that is
//! less than `max_connections` needs.
//!
//! A shell or a container usually starts programs with a soft `RLIMIT_NOFILE` of 1024
//! and a much higher hard limit. Left at 1024, a proxy runs out of descriptors at about
//! 500 clients (each proxied request holds two) and then can only back off accepting.
//! HAProxy and Go programs raise the soft limit to the hard one at start for this reason;
//! so does ringway. Only the hard limit (`LimitNOFILE`, `ulimit -Hn`) is the operator's.

/// Descriptors beyond the per-connection ones: listeners, rings, log files, pooled idle
/// upstream connections of a small fleet.
const SPARE: u64 = 256;

/// What the limit was, what it is now, and whether that covers `max_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub before: u64,
    pub now: u64,
    /// Descriptors `max_connections` proxied requests need (two each, plus spares).
    pub wanted: u64,
}

impl FdLimit {
    /// Raises the soft limit as far as the hard limit allows (never lowers it).
    pub fn raise(max_connections: u64) -> std::io::Result<FdLimit> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let before = lim.rlim_cur;
        let target = raised(lim.rlim_cur, lim.rlim_max);
        if target > lim.rlim_cur {
            lim.rlim_cur = target;
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(FdLimit {
            before,
            now: lim.rlim_cur,
            wanted: wanted(max_connections),
        })
    }

    /// A warning for the log when the limit cannot hold `max_connections`.
    pub fn shortfall(&self) -> Option<String> {
        (self.now < self.wanted).then(|| {
            format!(
                "the open-files limit is {} (ulimit -n; LimitNOFILE under systemd), enough for \
                 about {} client connections while runtime.max_connections allows {}; beyond \
                 that accepting backs off until descriptors free up (see tuning/README.md)",
                self.now,
                self.now.saturating_sub(SPARE) / 2,
                self.wanted.saturating_sub(SPARE) / 2,
            )
        })
    }
}

/// The soft limit to ask for: the hard limit, or the kernel's per-process ceiling when the
/// hard limit is "unlimited" (setrlimit refuses more than `fs.nr_open`).
fn raised(soft: u64, hard: u64) -> u64 {
    let ceiling = if hard == libc::RLIM_INFINITY {
        nr_open().unwrap_or(1 << 20)
    } else {
        hard
    };
    soft.max(ceiling)
}

fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn wanted(max_connections: u64) -> u64 {
    max_connections.saturating_mul(2).saturating_add(SPARE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_goes_up_to_the_hard_one_and_never_down() {
        assert_eq!(raised(1024, 524_288), 524_288);
        assert_eq!(raised(4096, 4096), 4096);
        // A soft limit above the hard one cannot happen; if it did, it is not lowered.
        assert_eq!(raised(8192, 4096), 8192);
        assert!(raised(1024, libc::RLIM_INFINITY) >= 1024);
    }

    #[test]
    fn a_limit_too_small_for_max_connections_is_reported_with_both_numbers() {
        let tight = FdLimit {
            before: 1024,
            now: 1024,
            wanted: wanted(100_000),
        };
        let text = tight
            .shortfall()
            .expect("1024 descriptors cannot hold 100000 clients");
        assert!(text.contains("is 1024"), "{text}");
        assert!(text.contains("about 384 client connections"), "{text}");
        assert!(text.contains("allows 100000"), "{text}");
        let roomy = FdLimit {
            before: 1024,
            now: 1 << 20,
            wanted: wanted(100_000),
        };
        assert_eq!(roomy.shortfall(), None);
    }

    #[test]
    fn raising_in_this_process_keeps_or_raises_the_limit() {
        let got = FdLimit::raise(10).expect("getrlimit works");
        assert!(got.now >= got.before);
    }
}
