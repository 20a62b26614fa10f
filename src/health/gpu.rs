//! The GPU probe behind stage `gpu`: does NVML see the device the config asks for?
//!
//! NVML (`libnvidia-ml.so`) comes from the host's driver and is loaded at run time; on a machine
//! without it the probe says `unavailable`, which is fatal only when the config requires a GPU.

use nvml_wrapper::Nvml;

/// What NVML said about the configured device.
#[derive(Debug, Clone, PartialEq)]
pub enum GpuProbe {
    Available(GpuInfo),
    Unavailable { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub driver_version: String,
    pub memory_total_bytes: u64,
}

/// Probes device `index` once. Blocking (NVML calls into the driver): run it off the async runtime.
pub fn probe(index: u32) -> GpuProbe {
    let unavailable =
        |what: &str, e: nvml_wrapper::error::NvmlError| GpuProbe::Unavailable { reason: format!("{what}: {e}") };
    let nvml = match Nvml::init() {
        Ok(n) => n,
        Err(e) => return unavailable("NVML did not initialise (no NVIDIA driver here?)", e),
    };
    let count = match nvml.device_count() {
        Ok(c) => c,
        Err(e) => return unavailable("NVML device count", e),
    };
    if index >= count {
        return GpuProbe::Unavailable { reason: format!("device {index} asked for, NVML sees {count} device(s)") };
    }
    let device = match nvml.device_by_index(index) {
        Ok(d) => d,
        Err(e) => return unavailable("NVML device handle", e),
    };
    GpuProbe::Available(GpuInfo {
        index,
        name: device.name().unwrap_or_default(),
        uuid: device.uuid().unwrap_or_default(),
        driver_version: nvml.sys_driver_version().unwrap_or_default(),
        memory_total_bytes: device.memory_info().map(|m| m.total).unwrap_or_default(),
    })
}
