//! The cluster edge: what recovery does to ECS, EC2 and SNS, behind the [`Fleet`] trait.
//!
//! Idempotence: tasks this function starts carry a `startedBy` token, and every start looks for
//! a task with that token on the instance first, so a repeated step (a Lambda retry, a lease
//! taken over) finds the task instead of starting a second one. Draining and activating are
//! idempotent in ECS. A reboot and an SNS message are the two steps that a crash between doing
//! them and recording them can repeat (rarely: the window is one DynamoDB write).

use std::future::Future;

use aws_sdk_ecs::types::{ContainerInstanceStatus, DesiredStatus, ResourceType, TaskOverride};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{op} failed")]
    Aws {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{op}: {reason}")]
    Rejected { op: &'static str, reason: String },
}

fn aws<E: std::error::Error + Send + Sync + 'static>(op: &'static str) -> impl FnOnce(E) -> FleetError {
    move |e| FleetError::Aws { op, source: Box::new(e) }
}

/// An ECS answer's `failures` entry (the call succeeded, ECS refused the thing).
fn rejected(op: &'static str, f: &aws_sdk_ecs::types::Failure) -> FleetError {
    FleetError::Rejected { op, reason: format!("{}: {}", f.reason().unwrap_or("no reason"), f.detail().unwrap_or("")) }
}

/// What to start where.
#[derive(Debug, Clone)]
pub struct StartSpec {
    pub task_definition: String,
    pub container_instance: String,
    pub started_by: String,
    pub group: Option<String>,
    pub overrides: Option<TaskOverride>,
}

/// A stopped task as ECS still describes it (about an hour after it stopped).
#[derive(Debug, Clone)]
pub struct TaskDescription {
    pub task_definition_arn: String,
    pub group: Option<String>,
    pub overrides: Option<TaskOverride>,
}

/// Everything recovery does outside DynamoDB.
pub trait Fleet: Send + Sync {
    /// Whether any container of the task definition asks for a GPU.
    fn task_definition_requests_gpu(
        &self,
        task_definition: &str,
    ) -> impl Future<Output = Result<bool, FleetError>> + Send;
    /// A task on the instance with this `startedBy`, running or stopped.
    fn find_task(
        &self,
        container_instance: &str,
        started_by: &str,
    ) -> impl Future<Output = Result<Option<String>, FleetError>> + Send;
    /// StartTask on one container instance; the new task's ARN.
    fn start_task(&self, spec: StartSpec) -> impl Future<Output = Result<String, FleetError>> + Send;
    fn set_instance_status(
        &self,
        container_instance: &str,
        draining: bool,
    ) -> impl Future<Output = Result<(), FleetError>> + Send;
    fn ec2_instance_of(&self, container_instance: &str) -> impl Future<Output = Result<String, FleetError>> + Send;
    fn reboot(&self, ec2_instance_id: &str) -> impl Future<Output = Result<(), FleetError>> + Send;
    fn describe_task(&self, task_arn: &str)
    -> impl Future<Output = Result<Option<TaskDescription>, FleetError>> + Send;
    fn notify(&self, subject: &str, message: &str) -> impl Future<Output = Result<(), FleetError>> + Send;
}

/// The real thing: ECS, EC2 and SNS through the AWS SDK.
#[derive(Clone)]
pub struct AwsFleet {
    pub ecs: aws_sdk_ecs::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub sns: aws_sdk_sns::Client,
    pub cluster: String,
    pub topic_arn: String,
}

impl AwsFleet {
    pub fn new(sdk: &aws_config::SdkConfig, cluster: &str, topic_arn: &str) -> Self {
        Self {
            ecs: aws_sdk_ecs::Client::new(sdk),
            ec2: aws_sdk_ec2::Client::new(sdk),
            sns: aws_sdk_sns::Client::new(sdk),
            cluster: cluster.to_string(),
            topic_arn: topic_arn.to_string(),
        }
    }
}

impl Fleet for AwsFleet {
    async fn task_definition_requests_gpu(&self, task_definition: &str) -> Result<bool, FleetError> {
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(task_definition)
            .send()
            .await
            .map_err(aws("ecs:DescribeTaskDefinition"))?;
        Ok(out.task_definition().is_some_and(|td| {
            td.container_definitions()
                .iter()
                .any(|c| c.resource_requirements().iter().any(|r| r.r#type() == &ResourceType::Gpu))
        }))
    }

    async fn find_task(&self, container_instance: &str, started_by: &str) -> Result<Option<String>, FleetError> {
        for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let out = self
                .ecs
                .list_tasks()
                .cluster(&self.cluster)
                .container_instance(container_instance)
                .started_by(started_by)
                .desired_status(status)
                .send()
                .await
                .map_err(aws("ecs:ListTasks"))?;
            if let Some(arn) = out.task_arns().first() {
                return Ok(Some(arn.clone()));
            }
        }
        Ok(None)
    }

    async fn start_task(&self, spec: StartSpec) -> Result<String, FleetError> {
        let out = self
            .ecs
            .start_task()
            .cluster(&self.cluster)
            .task_definition(&spec.task_definition)
            .container_instances(&spec.container_instance)
            .started_by(&spec.started_by)
            .set_group(spec.group)
            .set_overrides(spec.overrides)
            .send()
            .await
            .map_err(aws("ecs:StartTask"))?;
        if let Some(f) = out.failures().first() {
            return Err(rejected("ecs:StartTask", f));
        }
        out.tasks()
            .first()
            .and_then(|t| t.task_arn())
            .map(str::to_string)
            .ok_or(FleetError::Rejected { op: "ecs:StartTask", reason: "no task in the answer".into() })
    }

    async fn set_instance_status(&self, container_instance: &str, draining: bool) -> Result<(), FleetError> {
        let status = if draining { ContainerInstanceStatus::Draining } else { ContainerInstanceStatus::Active };
        let out = self
            .ecs
            .update_container_instances_state()
            .cluster(&self.cluster)
            .container_instances(container_instance)
            .status(status)
            .send()
            .await
            .map_err(aws("ecs:UpdateContainerInstancesState"))?;
        match out.failures().first() {
            Some(f) => Err(rejected("ecs:UpdateContainerInstancesState", f)),
            None => Ok(()),
        }
    }

    async fn ec2_instance_of(&self, container_instance: &str) -> Result<String, FleetError> {
        let out = self
            .ecs
            .describe_container_instances()
            .cluster(&self.cluster)
            .container_instances(container_instance)
            .send()
            .await
            .map_err(aws("ecs:DescribeContainerInstances"))?;
        out.container_instances().first().and_then(|c| c.ec2_instance_id()).map(str::to_string).ok_or(
            FleetError::Rejected {
                op: "ecs:DescribeContainerInstances",
                reason: format!("{container_instance} not found"),
            },
        )
    }

    async fn reboot(&self, ec2_instance_id: &str) -> Result<(), FleetError> {
        self.ec2.reboot_instances().instance_ids(ec2_instance_id).send().await.map_err(aws("ec2:RebootInstances"))?;
        Ok(())
    }

    async fn describe_task(&self, task_arn: &str) -> Result<Option<TaskDescription>, FleetError> {
        let out = self
            .ecs
            .describe_tasks()
            .cluster(&self.cluster)
            .tasks(task_arn)
            .send()
            .await
            .map_err(aws("ecs:DescribeTasks"))?;
        Ok(out.tasks().first().map(|t| TaskDescription {
            task_definition_arn: t.task_definition_arn().unwrap_or_default().to_string(),
            group: t.group().map(str::to_string),
            overrides: t.overrides().cloned(),
        }))
    }

    async fn notify(&self, subject: &str, message: &str) -> Result<(), FleetError> {
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map_err(aws("sns:Publish"))?;
        Ok(())
    }
}
