//! The half-core limit of the second pass: a CPU cgroup with a 50 ms / 100 ms quota holding a
//! proxy's processes. cgroup v2 (`cpu.max`) first; where the cpu controller is still bound to
//! a v1 hierarchy (hybrid hosts), the documented v1 equivalent `cpu.cfs_quota_us` /
//! `cpu.cfs_period_us`, which the kernel enforces with the same CFS bandwidth control.

use std::path::{Path, PathBuf};

/// Quota and period in microseconds: half of one CPU.
const QUOTA_US: u32 = 50_000;
const PERIOD_US: u32 = 100_000;

/// Which cgroup interface limits CPU on this host.
#[derive(Debug, Clone)]
pub enum Hierarchy {
    /// cgroup v2 mounted at `root` with the cpu controller available there.
    V2 { root: PathBuf },
    /// cgroup v1 cpu controller mounted at `root`.
    V1 { root: PathBuf },
}

impl Hierarchy {
    /// Finds a writable way to cap CPU, or says why there is none.
    pub fn detect() -> Result<Hierarchy, String> {
        for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            let controllers = std::fs::read_to_string(Path::new(root).join("cgroup.controllers"));
            if controllers.is_ok_and(|c| c.split_whitespace().any(|w| w == "cpu")) {
                return Ok(Hierarchy::V2 { root: root.into() });
            }
        }
        for root in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"] {
            if Path::new(root).join("cpu.cfs_quota_us").exists() {
                return Ok(Hierarchy::V1 { root: root.into() });
            }
        }
        Err("no cgroup v2 with the cpu controller and no cgroup v1 cpu hierarchy".into())
    }

    pub fn describe(&self) -> String {
        match self {
            Hierarchy::V2 { root } => {
                format!(
                    "cgroup v2 cpu.max = \"{QUOTA_US} {PERIOD_US}\" under {}",
                    root.display()
                )
            }
            Hierarchy::V1 { root } => format!(
                "cgroup v1 cpu.cfs_quota_us = {QUOTA_US}, cpu.cfs_period_us = {PERIOD_US} under {} \
                 (the cpu controller is not available in cgroup v2 on this host)",
                root.display()
            ),
        }
    }

    fn root(&self) -> &Path {
        match self {
            Hierarchy::V2 { root } | Hierarchy::V1 { root } => root,
        }
    }
}

/// A cgroup holding some processes at half a core. Dropping it moves them back to the cgroup
/// each came from and removes the directory.
pub struct HalfCore {
    dir: PathBuf,
    /// (pid, the cgroup.procs file of its original cgroup).
    moved: Vec<(u32, PathBuf)>,
}

impl HalfCore {
    /// Creates cgroup `name` under `hierarchy` with the half-core quota and moves `pids` in.
    pub fn new(hierarchy: &Hierarchy, name: &str, pids: &[u32]) -> Result<HalfCore, String> {
        let root = hierarchy.root();
        if let Hierarchy::V2 { .. } = hierarchy {
            enable_cpu_controller(root)?;
        }
        let dir = root.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let mut limit = HalfCore {
            dir,
            moved: Vec::new(),
        };
        match hierarchy {
            Hierarchy::V2 { .. } => write(
                &limit.dir.join("cpu.max"),
                &format!("{QUOTA_US} {PERIOD_US}"),
            )?,
            Hierarchy::V1 { .. } => {
                write(&limit.dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                write(&limit.dir.join("cpu.cfs_quota_us"), &QUOTA_US.to_string())?;
            }
        }
        for &pid in pids {
            let original = original_cgroup(hierarchy, pid)?;
            write(&limit.dir.join("cgroup.procs"), &pid.to_string())?;
            limit.moved.push((pid, original.join("cgroup.procs")));
            // A write the kernel accepted but did not act on would make the pass a lie.
            let now = original_cgroup(hierarchy, pid)?;
            if now != limit.dir {
                return Err(format!("pid {pid} is in {} after the move", now.display()));
            }
        }
        Ok(limit)
    }
}

impl Drop for HalfCore {
    fn drop(&mut self) {
        for (pid, procs) in &self.moved {
            // A process that has exited meanwhile cannot be moved and need not be.
            let _ = write(procs, &pid.to_string());
        }
        // The kernel may report the group busy for a moment after its last process left.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        eprintln!("e2e: could not remove {}", self.dir.display());
    }
}

/// cgroup v2 hands a controller to children only when the parent lists it in
/// cgroup.subtree_control.
fn enable_cpu_controller(root: &Path) -> Result<(), String> {
    let control = root.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&control).unwrap_or_default();
    if enabled.split_whitespace().any(|w| w == "cpu") {
        return Ok(());
    }
    write(&control, "+cpu")
}

/// The directory of the cgroup `pid` is in now, in `hierarchy`, from /proc/PID/cgroup.
fn original_cgroup(hierarchy: &Hierarchy, pid: u32) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| format!("/proc/{pid}/cgroup: {e}"))?;
    let relative = cgroup_path(hierarchy, &text)
        .ok_or_else(|| format!("pid {pid}: no entry for this hierarchy in /proc/{pid}/cgroup"))?;
    Ok(hierarchy.root().join(relative.trim_start_matches('/')))
}

/// The path of the right line of /proc/PID/cgroup: `0::/path` for v2, the line whose
/// controller list names `cpu` for v1.
pub fn cgroup_path<'a>(hierarchy: &Hierarchy, proc_cgroup: &'a str) -> Option<&'a str> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let wanted = match hierarchy {
            Hierarchy::V2 { .. } => controllers.is_empty(),
            Hierarchy::V1 { .. } => controllers.split(',').any(|c| c == "cpu"),
        };
        wanted.then_some(path)
    })
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("write {value:?} to {}: {e}", path.display()))
}
