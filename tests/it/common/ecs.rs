//! An ECS container health check, as ECS applies it (the task definition's `healthCheck`):
//! the command runs every `interval`; it passes if it exits 0 within `timeout`. Status starts
//! UNKNOWN. A pass makes the container HEALTHY and resets the failure count. A failure counts
//! toward `retries` consecutive failures (then UNHEALTHY, and ECS replaces the task), except
//! during `startPeriod` before the first pass, where failures are not counted.

use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct HealthCheck {
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Unknown,
    Healthy,
    Unhealthy,
}

/// One check as it happened.
#[derive(Debug, Clone)]
pub struct Check {
    pub at: Duration,
    pub passed: bool,
    pub status: Status,
}

pub struct Simulator {
    pub cfg: HealthCheck,
    pub status: Status,
    failures: u32,
    ever_healthy: bool,
    started: Instant,
    pub checks: Vec<Check>,
}

impl Simulator {
    /// The container starts now.
    pub fn new(cfg: HealthCheck) -> Self {
        Self {
            cfg,
            status: Status::Unknown,
            failures: 0,
            ever_healthy: false,
            started: Instant::now(),
            checks: Vec::new(),
        }
    }

    /// Applies one check's result.
    pub fn record(&mut self, passed: bool) -> Status {
        let in_start_period = self.started.elapsed() < self.cfg.start_period;
        if passed {
            self.failures = 0;
            self.ever_healthy = true;
            self.status = Status::Healthy;
        } else if self.ever_healthy || !in_start_period {
            // Failures before the first pass inside the start period do not count.
            self.failures += 1;
            if self.failures >= self.cfg.retries {
                self.status = Status::Unhealthy;
            }
        }
        self.checks.push(Check { at: self.started.elapsed(), passed, status: self.status });
        self.status
    }

    /// Runs `command` once (killed after `timeout`), then waits out the interval.
    pub fn tick(&mut self, command: &mut Command) -> Status {
        let began = Instant::now();
        let passed = run_with_timeout(command, self.cfg.timeout);
        let status = self.record(passed);
        if let Some(rest) = self.cfg.interval.checked_sub(began.elapsed()) {
            std::thread::sleep(rest);
        }
        status
    }
}

fn run_with_timeout(command: &mut Command, timeout: Duration) -> bool {
    let Ok(mut child) = command.spawn() else { return false };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}
