//! The machine's usage as a worker reports it in heartbeats: CPU %, memory,
//! network rates (from the counters' change between two samples) and, when
//! NVML can be loaded, each NVIDIA GPU's utilisation and video memory.
//! What cannot be measured is left unset: it never reports a number it did
//! not read from the machine.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sysinfo::{Networks, System};

use super::gpus::Gpus;
use crate::proto::v1::Usage;

/// Interfaces left out of the network rates: loopback traffic (the agent's
/// own calls to a node on the same machine) is not the machine's network.
fn is_loopback(interface: &str) -> bool {
    interface == "lo" || interface.starts_with("lo0")
}

/// Bytes per second between two readings of a counter; None when the
/// counter went backwards (an interface went away) or no time passed.
pub fn rate_per_s(before: u64, now: u64, elapsed: Duration) -> Option<u64> {
    if now < before || elapsed.is_zero() {
        return None;
    }
    Some(((now - before) as f64 / elapsed.as_secs_f64()).round() as u64)
}

/// Keeps what two samples need in common: sysinfo's previous CPU times, the
/// previous network counters, and the GPUs.
pub struct UsageSampler {
    system: System,
    networks: Networks,
    gpus: Gpus,
    /// Network totals (rx, tx) at the last sample, and when.
    last_net: Option<(Instant, u64, u64)>,
    /// The first CPU reading has nothing to compare with.
    cpu_primed: bool,
}

impl UsageSampler {
    /// Loads NVML if present; a machine without it reports no GPUs.
    pub fn new() -> Self {
        UsageSampler {
            system: System::new(),
            networks: Networks::new_with_refreshed_list(),
            gpus: Gpus::load(),
            last_net: None,
            cpu_primed: false,
        }
    }

    /// What the machine offers: cpu in millicores (logical CPUs) and
    /// memory in bytes, each within the limits of the cgroups the worker
    /// runs in (a container's, not the host's). GPUs are the agent's to
    /// count: `--gpus` may restrict them.
    pub fn machine_capacity(&mut self) -> BTreeMap<String, u64> {
        self.system.refresh_memory();
        let limits = super::cgroup::limits();
        let within = |have: u64, limit: Option<u64>| limit.map_or(have, |l| have.min(l));
        let mut cap = BTreeMap::new();
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get() as u64);
        let cpu = within(cpus * 1000, limits.cpu_millis);
        if cpu > 0 {
            cap.insert("cpu".to_string(), cpu);
        }
        let memory = within(self.system.total_memory(), limits.memory_bytes);
        if memory > 0 {
            cap.insert("memory".to_string(), memory);
        }
        cap
    }

    /// The machine's GPUs (NVML's, or the fakes of a test).
    pub fn gpu_devices(&self) -> Vec<crate::proto::v1::AssignedGpu> {
        self.gpus.devices()
    }

    /// One sample. Blocking (it reads /proc and NVML): call it from a
    /// blocking thread.
    pub fn sample(&mut self) -> Usage {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let cpu_pct = if self.cpu_primed {
            Some(f64::from(self.system.global_cpu_usage()))
        } else {
            self.cpu_primed = true;
            None
        };
        let total = self.system.total_memory();
        let (rx, tx) = self.network_rates();
        Usage {
            cpu_pct,
            memory_used_bytes: (total > 0).then(|| self.system.used_memory()),
            memory_total_bytes: (total > 0).then_some(total),
            gpus: self.gpus.sample(),
            net_rx_bytes_per_s: rx,
            net_tx_bytes_per_s: tx,
            at_ms: crate::clock::now_ms(),
        }
    }

    fn network_rates(&mut self) -> (Option<u64>, Option<u64>) {
        self.networks.refresh(true);
        let (mut rx, mut tx) = (0u64, 0u64);
        for (name, data) in self.networks.iter() {
            if !is_loopback(name) {
                rx = rx.saturating_add(data.total_received());
                tx = tx.saturating_add(data.total_transmitted());
            }
        }
        let now = Instant::now();
        let rates = match self.last_net {
            Some((at, rx0, tx0)) => (rate_per_s(rx0, rx, now - at), rate_per_s(tx0, tx, now - at)),
            None => (None, None),
        };
        self.last_net = Some((now, rx, tx));
        rates
    }
}

impl Default for UsageSampler {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_counter_deltas() {
        let s = Duration::from_secs(2);
        assert_eq!(rate_per_s(1000, 5000, s), Some(2000));
        assert_eq!(rate_per_s(5000, 5000, s), Some(0));
        assert_eq!(rate_per_s(5000, 1000, s), None, "a counter that reset");
        assert_eq!(rate_per_s(0, 10, Duration::ZERO), None);
        assert_eq!(rate_per_s(0, 1500, Duration::from_millis(500)), Some(3000));
    }

    #[test]
    fn loopback_is_not_the_network() {
        assert!(is_loopback("lo"));
        assert!(is_loopback("lo0"));
        assert!(!is_loopback("eth0"));
        assert!(!is_loopback("lxcbr0"));
    }

    #[test]
    fn a_sample_reports_what_the_machine_has() {
        let mut s = UsageSampler::new();
        let first = s.sample();
        assert_eq!(first.cpu_pct, None, "no CPU % before two readings");
        assert_eq!(first.net_rx_bytes_per_s, None);
        assert!(first.memory_total_bytes.unwrap() > 0);
        assert!(first.memory_used_bytes.unwrap() <= first.memory_total_bytes.unwrap());
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let second = s.sample();
        let cpu = second.cpu_pct.expect("a CPU % after two readings");
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        assert!(second.net_rx_bytes_per_s.is_some());
        assert!(s.machine_capacity()["cpu"] >= 1000);
        if !s.gpus.loaded() {
            assert!(second.gpus.is_empty(), "no NVML, no GPU numbers");
        }
    }
}
