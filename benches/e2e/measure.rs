//! What one run measures: wrk's report (requests/s, p50, p99, errors) and a process tree's
//! CPU time from /proc/PID/stat; plus the median used to combine rounds.

/// The figures the harness takes from one wrk run.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkReport {
    /// "N requests in 5.00s": the divisor for CPU per request.
    pub requests: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Non-2xx/3xx responses plus socket errors (connect, read, write, timeout): a proxy
    /// that answers fast with errors must not look good.
    pub errors: u64,
}

/// Parses the output of `wrk --latency`.
pub fn parse_wrk(out: &str) -> Result<WrkReport, String> {
    let mut requests = None;
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = 0u64;
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => p50 = parse_duration_us(v),
            ["99%", v] => p99 = parse_duration_us(v),
            [n, "requests", "in", ..] => requests = n.parse::<u64>().ok(),
            ["Requests/sec:", v] => rps = v.parse::<f64>().ok(),
            ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<u64>().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => errors += sum_numbers(rest),
            _ => {}
        }
    }
    let missing = |what: &str| format!("wrk output has no {what}: {}", out.trim());
    Ok(WrkReport {
        requests: requests.ok_or_else(|| missing("request count"))?,
        rps: rps.ok_or_else(|| missing("Requests/sec"))?,
        p50_us: p50.ok_or_else(|| missing("50% latency (--latency)"))?,
        p99_us: p99.ok_or_else(|| missing("99% latency (--latency)"))?,
        errors,
    })
}

/// "connect 0, read 3, write 0, timeout 1" → 4.
fn sum_numbers(words: &[&str]) -> u64 {
    words
        .iter()
        .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
        .sum()
}

/// wrk's durations ("812.00us", "1.23ms", "2.00s", "1.50m") in microseconds.
pub fn parse_duration_us(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(value * scale)
}

/// utime + stime (clock ticks) from the text of /proc/PID/stat. The command name in
/// parentheses may hold spaces and ')' so fields are counted after the LAST ')'.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    stat_user_kernel_ticks(stat).map(|(user, kernel)| user + kernel)
}

/// (utime, stime) in clock ticks: the time spent in the process's own code and in the
/// kernel on its behalf.
pub fn stat_user_kernel_ticks(stat: &str) -> Option<(u64, u64)> {
    let fields = stat_fields_after_comm(stat)?;
    // After the comm, field 0 is state (stat field 3): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// cutime + cstime (clock ticks): the CPU time of children this process has reaped, such as
/// the old workers nginx's or HAProxy's master collects after a reload.
pub fn stat_reaped_ticks(stat: &str) -> Option<u64> {
    let fields = stat_fields_after_comm(stat)?;
    let cutime: u64 = fields.get(13)?.parse().ok()?;
    let cstime: u64 = fields.get(14)?.parse().ok()?;
    Some(cutime + cstime)
}

/// The parent PID (stat field 4) from the text of /proc/PID/stat.
pub fn stat_ppid(stat: &str) -> Option<u32> {
    stat_fields_after_comm(stat)?.get(1)?.parse().ok()
}

fn stat_fields_after_comm(stat: &str) -> Option<Vec<&str>> {
    let close = stat.rfind(')')?;
    Some(stat[close + 1..].split_whitespace().collect())
}

/// `root` and every process below it (nginx's master and its worker), by scanning /proc.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            if let Some(ppid) = stat_ppid(&stat) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// CPU seconds (user + system, all threads) used so far by `root` and its descendants.
pub fn tree_cpu_seconds(root: u32) -> f64 {
    let cpu = tree_cpu(root);
    cpu.user + cpu.kernel
}

/// CPU seconds used so far by a process tree, split by where they were spent.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSplit {
    /// In the processes' own code and libraries (utime).
    pub user: f64,
    /// In the kernel on their behalf: system calls, TCP, wake-ups (stime).
    pub kernel: f64,
}

/// [`CpuSplit`] of `root` and its descendants, all threads.
pub fn tree_cpu(root: u32) -> CpuSplit {
    let hz = clock_ticks_per_second();
    let (user, kernel) = process_tree(root)
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| stat_user_kernel_ticks(&stat))
        .fold((0, 0), |(u, k), (du, dk)| (u + du, k + dk));
    CpuSplit {
        user: user as f64 / hz,
        kernel: kernel as f64 / hz,
    }
}

/// Like [`tree_cpu_seconds`] plus the time of the children `root` has reaped, so that workers
/// that exit during a measurement (replaced by a reload) still count.
pub fn tree_cpu_seconds_with_reaped(root: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{root}/stat")).unwrap_or_default();
    let reaped = stat_reaped_ticks(&stat).unwrap_or(0);
    tree_cpu_seconds(root) + reaped as f64 / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// Median of `values` (mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The 1-minute load average from the text of /proc/loadavg.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// "load average (1 min) 0.85 before the first run, 2.10 after the last": on a shared
/// machine, what else ran shows here (the harness itself keeps about 2 busy while it measures).
pub fn load_note(before: Option<f64>, after: Option<f64>) -> String {
    let show = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.2}"));
    format!(
        "load average (1 min) {} before the first run, {} after the last (the harness itself \
         keeps about 2 runnable while it measures)",
        show(before),
        show(after)
    )
}

/// The machine's 1-minute load average now.
pub fn load_average() -> Option<f64> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}
