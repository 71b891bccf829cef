//! The CPU and memory limits of the cgroup the worker runs in, so that a
//! worker in a container offers what the container may use, not what the
//! host has. cgroup v2 (`cpu.max`, `memory.max`) and v1 (`cpu.cfs_quota_us`
//! with `cpu.cfs_period_us`, `memory.limit_in_bytes`), from the process's
//! own cgroup up to the root: the tightest limit on the way applies.

use std::path::{Path, PathBuf};

/// A v1 memory limit at or above this is "no limit" (the kernel writes
/// the largest page-aligned i64).
const V1_NO_LIMIT: u64 = 1 << 62;

/// What the cgroups above the process allow; `None`: no limit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
}

/// The limits of this process's cgroups, read under `/sys/fs/cgroup`.
pub fn limits() -> Limits {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    limits_under(Path::new("/sys/fs/cgroup"), &own)
}

/// The limits under `root` (a cgroup file system) for a process whose
/// `/proc/self/cgroup` reads `own`.
pub fn limits_under(root: &Path, own: &str) -> Limits {
    let mut limits = Limits::default();
    for line in own.lines() {
        // "hierarchy-id:controllers:path"; v2 is "0::path".
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        let controllers: Vec<&str> = controllers.split(',').collect();
        if controllers == [""] {
            for dir in up_from(root, path) {
                let cpu = read(&dir.join("cpu.max")).and_then(|t| cpu_max(&t));
                let memory = read(&dir.join("memory.max")).and_then(|t| memory_max(&t));
                limits.tighten(cpu, memory);
            }
        }
        if controllers.contains(&"cpu") {
            for dir in up_from(&v1_mount(root, "cpu"), path) {
                let quota = read(&dir.join("cpu.cfs_quota_us"));
                let period = read(&dir.join("cpu.cfs_period_us"));
                let cpu = quota.zip(period).and_then(|(q, p)| cfs(&q, &p));
                limits.tighten(cpu, None);
            }
        }
        if controllers.contains(&"memory") {
            for dir in up_from(&root.join("memory"), path) {
                let memory = read(&dir.join("memory.limit_in_bytes"))
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .filter(|&b| b < V1_NO_LIMIT);
                limits.tighten(None, memory);
            }
        }
    }
    limits
}

impl Limits {
    fn tighten(&mut self, cpu: Option<u64>, memory: Option<u64>) {
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.cpu_millis = min(self.cpu_millis, cpu);
        self.memory_bytes = min(self.memory_bytes, memory);
    }
}

/// v1 mounts the cpu controller as `cpu`, or `cpu,cpuacct` with `cpu` a
/// link to it.
fn v1_mount(root: &Path, name: &str) -> PathBuf {
    let plain = root.join(name);
    if plain.exists() {
        plain
    } else {
        root.join("cpu,cpuacct")
    }
}

/// `root/path`, then each parent up to `root` itself. Inside a container's
/// cgroup namespace the path is `/`, and only `root` is read.
fn up_from(root: &Path, path: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut at = PathBuf::from(path);
    loop {
        dirs.push(root.join(&at));
        if !at.pop() {
            break;
        }
    }
    dirs
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// v2 `cpu.max`: "max 100000" (no limit) or "150000 100000" (1.5 CPUs).
fn cpu_max(text: &str) -> Option<u64> {
    let mut parts = text.split_whitespace();
    let (quota, period) = (parts.next()?, parts.next().unwrap_or("100000"));
    cfs(quota, period)
}

/// A quota and a period in µs as millicores; a quota of `max` or -1 is
/// none.
fn cfs(quota: &str, period: &str) -> Option<u64> {
    let quota: u64 = quota.trim().parse().ok()?;
    let period: u64 = period.trim().parse().ok().filter(|&p| p > 0)?;
    Some((quota * 1000 / period).max(1))
}

/// v2 `memory.max`: "max" or bytes.
fn memory_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn v2_limits_are_the_tightest_on_the_way_up() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("kubepods/pod1/c1");
        write(root.path(), "cpu.max", "max 100000\n");
        write(
            &root.path().join("kubepods/pod1"),
            "cpu.max",
            "250000 100000\n",
        );
        write(&own, "cpu.max", "max 100000\n");
        write(&own, "memory.max", "4294967296\n");
        write(&root.path().join("kubepods"), "memory.max", "max\n");
        let l = limits_under(root.path(), "0::/kubepods/pod1/c1\n");
        assert_eq!(l.cpu_millis, Some(2_500));
        assert_eq!(l.memory_bytes, Some(4 << 30));
    }

    #[test]
    fn v2_in_a_namespace_reads_the_root() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "cpu.max", "150000 100000");
        write(root.path(), "memory.max", "max");
        let l = limits_under(root.path(), "0::/\n");
        assert_eq!(l.cpu_millis, Some(1_500));
        assert_eq!(l.memory_bytes, None);
    }

    #[test]
    fn v1_limits() {
        let root = tempfile::tempdir().unwrap();
        let cpu = root.path().join("cpu,cpuacct/docker/abc");
        write(&cpu, "cpu.cfs_quota_us", "50000\n");
        write(&cpu, "cpu.cfs_period_us", "100000\n");
        let memory = root.path().join("memory/docker/abc");
        write(&memory, "memory.limit_in_bytes", "1073741824\n");
        write(
            &root.path().join("memory"),
            "memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        let own = "12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n";
        let l = limits_under(root.path(), own);
        assert_eq!(l.cpu_millis, Some(500));
        assert_eq!(l.memory_bytes, Some(1 << 30));
    }

    #[test]
    fn no_cgroup_files_no_limits() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(limits_under(root.path(), "0::/x\n"), Limits::default());
        assert_eq!(limits_under(root.path(), ""), Limits::default());
        assert_eq!(cfs("-1", "100000"), None);
    }
}
