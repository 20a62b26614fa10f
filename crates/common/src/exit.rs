//! The exit-code contract. The service exits with these; the recovery function reads them from
//! ECS task-stop events, so both sides take them from here.

/// A GPU fault (device lost, reset-class XID, CUDA error, or a required GPU not usable at
/// startup): distinct, so ECS task-stop events name the cause and recovery diagnoses the instance.
pub const GPU_FAULT: u8 = 86;

/// A second signal cut the drain short (128 + SIGINT, as shells report it).
pub const FORCED: u8 = 130;
