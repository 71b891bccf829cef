//! The machine's NVIDIA GPUs, as a worker reports them: which there are
//! (index and UUID) and each one's utilisation and video memory, read
//! through NVML.
//!
//! NVML is loaded at run time (the library is dlopened, not linked), so one
//! binary runs on machines with and without NVIDIA. A build without the
//! `gpu` cargo feature (a client-only build) has no NVML at all and reports
//! no GPUs, like a machine without them.

use crate::proto::v1::{AssignedGpu, GpuUsage};

/// A test hook: this many fake GPUs (`GPU-fake-0`, ...) instead of NVML's,
/// so that per-task assignment can be tested on machines without NVIDIA.
/// They report no usage.
pub const FAKE_GPUS_ENV: &str = "LANEQ_WORKER_FAKE_GPUS";

/// The fake GPUs of [`FAKE_GPUS_ENV`], when it is set.
fn fake_devices() -> Option<Vec<AssignedGpu>> {
    let n: u32 = std::env::var(FAKE_GPUS_ENV).ok()?.trim().parse().ok()?;
    tracing::warn!("{FAKE_GPUS_ENV}={n}: {n} fake GPUs, not the machine's");
    Some(
        (0..n)
            .map(|index| AssignedGpu {
                index,
                uuid: format!("GPU-fake-{index}"),
            })
            .collect(),
    )
}

/// NVML, when it could be loaded.
pub struct Gpus {
    #[cfg(feature = "gpu")]
    nvml: Option<nvml_wrapper::Nvml>,
}

#[cfg(feature = "gpu")]
impl Gpus {
    /// Loads NVML if present; a machine without it reports no GPUs.
    pub fn load() -> Self {
        let nvml = nvml_wrapper::Nvml::init()
            .map_err(|e| tracing::info!("no NVML ({e}): no GPU usage is reported"))
            .ok();
        Self { nvml }
    }

    /// Whether NVML was loaded (it may still count no GPUs).
    #[cfg(test)]
    pub fn loaded(&self) -> bool {
        self.nvml.is_some()
    }

    /// The GPUs, by index with their UUIDs (a GPU whose UUID cannot be read
    /// is left out: it cannot be named to a task).
    pub fn devices(&self) -> Vec<AssignedGpu> {
        if let Some(fake) = fake_devices() {
            return fake;
        }
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        (0..nvml.device_count().unwrap_or(0))
            .filter_map(|index| {
                let uuid = nvml.device_by_index(index).ok()?.uuid().ok()?;
                Some(AssignedGpu { index, uuid })
            })
            .collect()
    }

    /// Each GPU's usage now. A GPU whose numbers cannot be read is left
    /// out, not zeroed.
    pub fn sample(&self) -> Vec<GpuUsage> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        (0..nvml.device_count().unwrap_or(0))
            .filter_map(|index| {
                let device = nvml.device_by_index(index).ok()?;
                let util = device.utilization_rates().ok()?;
                let mem = device.memory_info().ok()?;
                Some(GpuUsage {
                    index,
                    name: device.name().unwrap_or_default(),
                    util_pct: f64::from(util.gpu),
                    memory_used_bytes: mem.used,
                    memory_total_bytes: mem.total,
                })
            })
            .collect()
    }
}

#[cfg(not(feature = "gpu"))]
impl Gpus {
    pub fn load() -> Self {
        tracing::info!("built without the `gpu` feature: no GPU usage is reported");
        Self {}
    }

    #[cfg(test)]
    pub fn loaded(&self) -> bool {
        false
    }

    pub fn devices(&self) -> Vec<AssignedGpu> {
        fake_devices().unwrap_or_default()
    }

    pub fn sample(&self) -> Vec<GpuUsage> {
        Vec::new()
    }
}
