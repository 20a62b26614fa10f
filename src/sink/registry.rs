//! The one registry of sinks: each sink's configuration builds its sink ([`SinkFactory`], the
//! shape of Vector's `SinkConfig`, without macros), and [`configured`] lists the ones a config
//! enables, in delivery order.
//!
//! Adding a sink: its config struct and one field in `config::SinksConfig`, one file in `sink/`
//! implementing [`super::Sink`] for the sink and [`SinkFactory`] for its config, one line in
//! [`configured`].

use std::sync::Arc;

use super::{Sink, SinkError};
use crate::config::{AwsConfig, SinksConfig};
use crate::pipeline::events::Event;

/// Names where a sink will store an event's snapshot (`s3://bucket/key`), from the event and
/// the Unix time it is emitted at.
pub type SnapshotLocator = Arc<dyn Fn(&Event, f64) -> String + Send + Sync>;

/// What building a sink may use.
pub struct BuildContext<'a> {
    /// The AWS configuration; present whenever a configured sink [`SinkFactory::needs_aws`].
    pub sdk: Option<&'a aws_config::SdkConfig>,
    pub aws: &'a AwsConfig,
}

/// A sink's configuration, which knows what its sink needs and builds it.
pub trait SinkFactory: Send + Sync {
    /// The sink's name: outbox cursor, metric label, health key (`sink.{name}`).
    fn name(&self) -> &'static str;
    /// Whether the sink calls AWS.
    fn needs_aws(&self) -> bool {
        true
    }
    /// The JPEG quality of the snapshots it stores, or `None` when it stores none.
    fn snapshot_quality(&self) -> Option<u8> {
        None
    }
    /// Names the snapshot's location in the event before it is queued, so every sink's copy of
    /// the event carries it. `None`: the sink does not name it.
    fn snapshot_locator(&self) -> Option<SnapshotLocator> {
        None
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>, SinkError>;
}

/// The sinks a configuration enables, in delivery order.
pub fn configured(config: &SinksConfig) -> Vec<&dyn SinkFactory> {
    let mut sinks: Vec<&dyn SinkFactory> = Vec::new();
    sinks.extend(config.local.as_ref().map(|c| c as &dyn SinkFactory));
    sinks.extend(config.kinesis.as_ref().map(|c| c as &dyn SinkFactory));
    sinks.extend(config.s3.as_ref().map(|c| c as &dyn SinkFactory));
    sinks.extend(config.dynamodb.as_ref().map(|c| c as &dyn SinkFactory));
    sinks
}

/// The enabled sinks' names (the outbox keeps a cursor each).
pub fn names(config: &SinksConfig) -> Vec<&'static str> {
    configured(config).iter().map(|s| s.name()).collect()
}

/// Whether any enabled sink calls AWS.
pub fn needs_aws(config: &SinksConfig) -> bool {
    configured(config).iter().any(|s| s.needs_aws())
}

/// A sink that needs AWS was built without the SDK configuration: a wiring bug, reported as
/// an error rather than a panic.
pub(super) fn sdk<'a>(ctx: &BuildContext<'a>, sink: &'static str) -> Result<&'a aws_config::SdkConfig, SinkError> {
    ctx.sdk.ok_or(SinkError::NoAwsConfig { sink })
}
