//! The GPU probe behind stage `gpu`, and the telemetry loop that watches the device afterwards.
//!
//! NVML (`libnvidia-ml.so`) comes from the host's driver and is loaded at run time; on a machine
//! without it the probe says `unavailable`, which is fatal only when the config requires a GPU.
//! The device is the one CUDA will use: entry `runtime.device_id` of `CUDA_VISIBLE_DEVICES` (an
//! index or a `GPU-…` UUID) when that is set, else NVML index `device_id`.
//!
//! After startup a thread samples the device every `health.gpu_poll_interval`: utilisation,
//! memory, temperature, power, ECC counts, and XID events. A lost device or an XID that needs a
//! GPU reset is a liveness failure (`gpu`): a new task on a healthy instance fixes it, waiting
//! does not.
//!
//! Test seam: with `KVS_INFER_FAKE_GPU=/path/file.json` the probe and the telemetry read that
//! file instead of NVML (see [`FakeGpu`]), so tests can start "a GPU" and then lose it.

use std::path::PathBuf;
use std::time::Duration;

use nvml_wrapper::Nvml;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::Health;

/// Environment variable naming the fake GPU file (tests only).
pub const FAKE_GPU_ENV: &str = "KVS_INFER_FAKE_GPU";

/// XIDs after which the GPU needs a reset (NVIDIA's XID catalogue: ECC double-bit errors, row
/// remapping failures, fallen off the bus, GSP errors, ...). Others are counted only: most are
/// an application's fault (e.g. 13, 31, 43) and end with that process.
pub const CRITICAL_XIDS: &[u64] = &[48, 61, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120, 140, UNKNOWN_XID];

/// Stands for a critical XID event whose number NVML could not report.
pub const UNKNOWN_XID: u64 = 999_999;

/// What NVML said about the configured device at startup.
#[derive(Debug, Clone, PartialEq)]
pub enum GpuProbe {
    Available(GpuInfo),
    Unavailable { reason: String },
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub driver_version: String,
    /// CUDA version the driver supports, `major.minor`.
    pub cuda_driver_version: String,
    pub memory_total_bytes: u64,
}

/// The oldest NVIDIA driver branch the bundled CUDA 13 runtime runs on (CUDA 13.0 needs 580+).
pub const MIN_DRIVER_MAJOR: u32 = 580;

impl GpuInfo {
    /// `Err` with the reason when the driver is older than the bundled CUDA needs (or its version
    /// cannot be read).
    pub fn driver_new_enough(&self) -> Result<(), String> {
        let major = self.driver_version.split('.').next().and_then(|m| m.trim().parse::<u32>().ok());
        match major {
            Some(m) if m >= MIN_DRIVER_MAJOR => Ok(()),
            Some(_) => Err(format!(
                "NVIDIA driver {} is older than {MIN_DRIVER_MAJOR}, which the bundled CUDA 13 needs: use a newer GPU AMI",
                self.driver_version
            )),
            None => Err(format!("cannot read the NVIDIA driver version ({:?})", self.driver_version)),
        }
    }
}

/// One telemetry sample. `None` where the device does not report a value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct GpuSample {
    pub utilization_ratio: Option<f64>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub temperature_celsius: Option<u32>,
    pub power_watts: Option<f64>,
    pub ecc_corrected_total: Option<u64>,
    pub ecc_uncorrected_total: Option<u64>,
    /// XID events since the last sample.
    pub xids: Vec<u64>,
    /// Set when the device is gone (NVML `GpuLost`, or it stopped answering).
    pub lost: Option<String>,
}

impl GpuSample {
    /// Exports the sample as the `gpu_*` metrics of device `uuid` at NVML `index`.
    fn publish(&self, uuid: &str, index: u32) {
        use crate::metrics::{self as m, set_gpu_gauge};
        let gauges = [
            (m::GPU_UTILIZATION_RATIO, self.utilization_ratio),
            (m::GPU_MEMORY_USED_BYTES, self.memory_used_bytes.map(|v| v as f64)),
            (m::GPU_MEMORY_TOTAL_BYTES, self.memory_total_bytes.map(|v| v as f64)),
            (m::GPU_TEMPERATURE_CELSIUS, self.temperature_celsius.map(f64::from)),
            (m::GPU_POWER_WATTS, self.power_watts),
        ];
        for (name, value) in gauges {
            if let Some(v) = value {
                set_gpu_gauge(name, uuid, index, v);
            }
        }
        for (kind, total) in [("corrected", self.ecc_corrected_total), ("uncorrected", self.ecc_uncorrected_total)] {
            if let Some(total) = total {
                m::set_gpu_ecc_total(uuid, index, kind, total);
            }
        }
        for &xid in &self.xids {
            m::count_gpu_xid(uuid, index, xid);
        }
    }
}

/// Which NVML device CUDA ordinal `device_id` is, given `CUDA_VISIBLE_DEVICES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Index(u32),
    Uuid(String),
}

pub fn target(device_id: u32, cuda_visible_devices: Option<&str>) -> Result<Target, String> {
    let Some(list) = cuda_visible_devices.map(str::trim).filter(|l| !l.is_empty()) else {
        return Ok(Target::Index(device_id));
    };
    let entry = list
        .split(',')
        .map(str::trim)
        .nth(device_id as usize)
        .ok_or_else(|| format!("CUDA_VISIBLE_DEVICES={list:?} has no entry {device_id}"))?;
    if entry.starts_with("GPU-") || entry.starts_with("MIG-") {
        Ok(Target::Uuid(entry.to_owned()))
    } else {
        entry
            .parse()
            .map(Target::Index)
            .map_err(|_| format!("CUDA_VISIBLE_DEVICES entry {entry:?} is not an index or UUID"))
    }
}

/// A source of GPU facts: NVML, or the fake file.
pub trait GpuMonitor: Send {
    fn info(&self) -> GpuInfo;
    fn sample(&mut self) -> GpuSample;
}

/// Opens the monitor for CUDA ordinal `device_id`. Blocking: run it off the async runtime.
pub fn open(device_id: u32) -> Result<Box<dyn GpuMonitor>, String> {
    if let Some(path) = std::env::var_os(FAKE_GPU_ENV) {
        let fake = FakeGpu { path: PathBuf::from(path) };
        fake.read()?;
        return Ok(Box::new(fake));
    }
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let target = target(device_id, visible.as_deref())?;
    NvmlMonitor::open(&target).map(|m| Box::new(m) as Box<dyn GpuMonitor>)
}

/// Probes the configured device once (stage `gpu`).
pub fn probe(device_id: u32) -> (GpuProbe, Option<Box<dyn GpuMonitor>>) {
    match open(device_id) {
        Ok(monitor) => (GpuProbe::Available(monitor.info()), Some(monitor)),
        Err(reason) => (GpuProbe::Unavailable { reason }, None),
    }
}

struct NvmlMonitor {
    /// NVML lives for the whole process (the event set borrows it).
    nvml: &'static Nvml,
    target: Target,
    info: GpuInfo,
    events: Option<nvml_wrapper::EventSet<'static>>,
}

impl NvmlMonitor {
    fn open(target: &Target) -> Result<Self, String> {
        let nvml = Nvml::init().map_err(|e| format!("NVML did not initialise (no NVIDIA driver here?): {e}"))?;
        let nvml: &'static Nvml = Box::leak(Box::new(nvml));
        let count = nvml.device_count().map_err(|e| format!("NVML device count: {e}"))?;
        let device = match target {
            Target::Index(i) if *i >= count => {
                return Err(format!("device {i} asked for, NVML sees {count} device(s)"));
            }
            Target::Index(i) => nvml.device_by_index(*i),
            Target::Uuid(u) => nvml.device_by_uuid(u.as_str()),
        }
        .map_err(|e| format!("NVML device {target:?}: {e}"))?;
        let cuda =
            nvml.sys_cuda_driver_version().map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10)).unwrap_or_default();
        let info = GpuInfo {
            index: device.index().unwrap_or_default(),
            name: device.name().unwrap_or_default(),
            uuid: device.uuid().unwrap_or_default(),
            driver_version: nvml.sys_driver_version().unwrap_or_default(),
            cuda_driver_version: cuda,
            memory_total_bytes: device.memory_info().map(|m| m.total).unwrap_or_default(),
        };
        // XID events need a supported device; without them the other samples still work.
        let events = nvml.create_event_set().ok().and_then(|set| {
            device.register_events(nvml_wrapper::bitmasks::event::EventTypes::CRITICAL_XID_ERROR, set).ok()
        });
        Ok(Self { nvml, target: Target::Uuid(info.uuid.clone()), info, events })
    }
}

impl GpuMonitor for NvmlMonitor {
    fn info(&self) -> GpuInfo {
        self.info.clone()
    }

    fn sample(&mut self) -> GpuSample {
        use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError, TemperatureSensor};
        use nvml_wrapper::error::NvmlError;
        let uuid = match &self.target {
            Target::Uuid(u) => u.clone(),
            Target::Index(_) => self.info.uuid.clone(),
        };
        let device = match self.nvml.device_by_uuid(uuid.as_str()) {
            Ok(d) => d,
            Err(e) => {
                return GpuSample { lost: Some(format!("NVML no longer finds {uuid}: {e}")), ..GpuSample::default() };
            }
        };
        let mut sample = GpuSample::default();
        match device.utilization_rates() {
            Ok(u) => sample.utilization_ratio = Some(f64::from(u.gpu) / 100.0),
            Err(NvmlError::GpuLost) => sample.lost = Some("NVML reports the GPU lost".to_owned()),
            Err(_) => {}
        }
        if let Ok(m) = device.memory_info() {
            sample.memory_used_bytes = Some(m.used);
            sample.memory_total_bytes = Some(m.total);
        }
        sample.temperature_celsius = device.temperature(TemperatureSensor::Gpu).ok();
        sample.power_watts = device.power_usage().ok().map(|mw| f64::from(mw) / 1000.0);
        sample.ecc_corrected_total = device.total_ecc_errors(MemoryError::Corrected, EccCounter::Aggregate).ok();
        sample.ecc_uncorrected_total = device.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Aggregate).ok();
        if let Some(set) = &self.events {
            // Drain what happened since the last sample without blocking.
            while let Ok(event) = set.wait(0) {
                match event.event_data {
                    Some(nvml_wrapper::enums::event::XidError::Value(xid)) => sample.xids.push(xid),
                    // An XID NVML could not name: count it as one that needs a reset.
                    Some(nvml_wrapper::enums::event::XidError::Unknown) => sample.xids.push(UNKNOWN_XID),
                    None => {}
                }
            }
        }
        sample
    }
}

/// The test seam: a JSON file with `info` (a [`GpuInfo`]) and `sample` (a [`GpuSample`]),
/// read on every call, so a test can change what "the GPU" reports while the service runs.
pub struct FakeGpu {
    pub path: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FakeFile {
    info: GpuInfo,
    sample: GpuSample,
}

impl FakeGpu {
    fn read(&self) -> Result<FakeFile, String> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| format!("fake GPU {}: {e}", self.path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("fake GPU {}: {e}", self.path.display()))
    }
}

impl GpuMonitor for FakeGpu {
    fn info(&self) -> GpuInfo {
        self.read().map(|f| f.info).unwrap_or_default()
    }

    fn sample(&mut self) -> GpuSample {
        match self.read() {
            Ok(f) => f.sample,
            Err(e) => GpuSample { lost: Some(e), ..GpuSample::default() },
        }
    }
}

/// What one sample means for liveness: the reason to fail it, if any.
pub fn fault(sample: &GpuSample) -> Option<String> {
    if let Some(lost) = &sample.lost {
        return Some(format!("GPU lost: {lost}"));
    }
    sample
        .xids
        .iter()
        .find(|x| CRITICAL_XIDS.contains(x))
        .map(|x| format!("GPU reported XID {x}, which needs a GPU reset"))
}

/// Samples every `interval` on its own thread until `stop`; publishes metrics and turns a lost
/// device or a critical XID into the `gpu` liveness failure (it stays: only a restart on a
/// healthy GPU clears it).
pub fn spawn_telemetry(
    mut monitor: Box<dyn GpuMonitor>,
    interval: Duration,
    health: Health,
    stop: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("kvs-infer-gpu".into()).spawn(move || {
        let info = monitor.info();
        let mut failed = false;
        while !stop.is_cancelled() {
            let sample = monitor.sample();
            sample.publish(&info.uuid, info.index);
            if !failed && let Some(reason) = fault(&sample) {
                tracing::error!(gpu = info.uuid, reason, "GPU fault: failing liveness so the task is replaced");
                health.set_liveness_failure(&super::Component::Gpu, reason);
                failed = true;
            }
            // Sleep in short steps so shutdown is prompt.
            let mut left = interval;
            while !left.is_zero() && !stop.is_cancelled() {
                let step = left.min(Duration::from_millis(100));
                std::thread::sleep(step);
                left -= step;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_visible_devices_picks_the_nvml_device() {
        assert_eq!(target(0, None), Ok(Target::Index(0)));
        assert_eq!(target(1, Some("")), Ok(Target::Index(1)));
        assert_eq!(target(0, Some("3,1")), Ok(Target::Index(3)));
        assert_eq!(target(1, Some("3, 1")), Ok(Target::Index(1)));
        assert_eq!(target(0, Some("GPU-8f2e1c7a-0000")), Ok(Target::Uuid("GPU-8f2e1c7a-0000".into())));
        assert!(target(2, Some("0,1")).is_err());
        assert!(target(0, Some("first")).is_err());
    }

    #[test]
    fn only_reset_worthy_faults_fail_liveness() {
        assert_eq!(fault(&GpuSample::default()), None);
        assert_eq!(fault(&GpuSample { xids: vec![13, 31, 43], ..GpuSample::default() }), None, "application faults");
        assert!(fault(&GpuSample { xids: vec![13, 79], ..GpuSample::default() }).is_some_and(|r| r.contains("XID 79")));
        assert!(fault(&GpuSample { lost: Some("gone".into()), ..GpuSample::default() }).is_some());
    }

    #[test]
    fn the_driver_must_be_580_or_newer_for_cuda_13() {
        let info = |v: &str| GpuInfo { driver_version: v.into(), ..GpuInfo::default() };
        assert!(info("580.65.06").driver_new_enough().is_ok());
        assert!(info("590.1").driver_new_enough().is_ok());
        let e = info("570.172.08").driver_new_enough().expect_err("too old");
        assert!(e.contains("570.172.08") && e.contains("580"), "{e}");
        assert!(info("").driver_new_enough().is_err());
    }
}
