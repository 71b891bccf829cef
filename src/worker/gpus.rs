//! The machine's NVIDIA GPUs, as a worker reports them: how many there are
//! and each one's utilisation and video memory, read through NVML.
//!
//! NVML is loaded at run time (the library is dlopened, not linked), so one
//! binary runs on machines with and without NVIDIA. A build without the
//! `gpu` cargo feature (a client-only build) has no NVML at all and reports
//! no GPUs, like a machine without them.

use crate::proto::v1::GpuUsage;

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

    /// How many GPUs NVML counts, when it can.
    pub fn count(&self) -> Option<u32> {
        self.nvml.as_ref().and_then(|n| n.device_count().ok())
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

    pub fn count(&self) -> Option<u32> {
        None
    }

    pub fn sample(&self) -> Vec<GpuUsage> {
        Vec::new()
    }
}
