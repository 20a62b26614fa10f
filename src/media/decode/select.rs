//! Choosing where video is decoded (`runtime.decoder`), once at startup.

use super::Backend;
use crate::config::DecoderKind;
use crate::media::MediaError;

/// The decoder the service runs on, and why (the startup log and `/healthz` `info.decoder`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub backend: Backend,
    pub reason: String,
}

/// `nvdec` must open; `auto` takes NVDEC only with the CUDA provider in use and when NVDEC opens,
/// else the CPU; `cpu` is the CPU. `probe` opens an NVDEC decoder (see [`super::probe_nvdec`]).
pub fn choose(
    setting: DecoderKind,
    cuda_in_use: bool,
    probe: impl FnOnce() -> Result<(), MediaError>,
) -> Result<Choice, MediaError> {
    let choice = |backend, reason: &str| Choice { backend, reason: reason.to_owned() };
    match setting {
        DecoderKind::Cpu => Ok(choice(Backend::Cpu, "runtime.decoder is cpu")),
        DecoderKind::Nvdec => probe().map(|()| choice(Backend::Nvdec, "runtime.decoder is nvdec")),
        DecoderKind::Auto if !cuda_in_use => Ok(choice(Backend::Cpu, "auto: the CUDA provider is not in use")),
        DecoderKind::Auto => Ok(match probe() {
            Ok(()) => choice(Backend::Nvdec, "auto: NVDEC opened"),
            Err(e) => {
                Choice { backend: Backend::Cpu, reason: format!("auto: NVDEC unavailable ({e}), decoding on the CPU") }
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_gpu() -> Result<(), MediaError> {
        Err(MediaError::DecoderUnavailable { decoder: "h264_cuvid", reason: "cannot load libnvcuvid.so.1".into() })
    }

    #[test]
    fn selection_and_fallback() {
        let cpu = choose(DecoderKind::Cpu, true, || panic!("cpu never probes")).expect("cpu");
        assert_eq!(cpu.backend, Backend::Cpu);
        let auto = choose(DecoderKind::Auto, false, || panic!("no CUDA, no probe")).expect("auto");
        assert_eq!((auto.backend, auto.reason.as_str()), (Backend::Cpu, "auto: the CUDA provider is not in use"));
        let auto = choose(DecoderKind::Auto, true, no_gpu).expect("auto falls back");
        assert_eq!(auto.backend, Backend::Cpu);
        assert!(auto.reason.contains("libnvcuvid"), "{}", auto.reason);
        let auto = choose(DecoderKind::Auto, true, || Ok(())).expect("auto");
        assert_eq!(auto.backend, Backend::Nvdec);
        let required = choose(DecoderKind::Nvdec, false, no_gpu).expect_err("nvdec is required");
        assert!(required.to_string().contains("h264_cuvid"), "{required}");
        assert_eq!(choose(DecoderKind::Nvdec, false, || Ok(())).expect("nvdec").backend, Backend::Nvdec);
    }
}
