#!/usr/bin/env bash
# Creates or updates everything kvs-infer needs on ECS, idempotently, with the AWS CLI:
# ECR repository (+ lifecycle policy), IAM roles and policies, log group, target group (+ slow
# start, listener rule is left to the ALB owner), task definition, service, auto scaling.
# Then waits for the service to be stable and prints what it did.
#
# Usage: ecs/deploy.sh [ENV_FILE]   (default ecs/.env; see ecs/.env.example)
# Credentials: the caller's AWS CLI configuration (a profile locally, OIDC in CI). Nothing secret
# is read from the env file.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
env_file="${1:-$here/.env}"

die() { echo "deploy: $*" >&2; exit 1; }
say() { echo "deploy: $*"; }

for tool in aws python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
[ -f "$env_file" ] || die "no $env_file (copy ecs/.env.example and fill it in)"

required=(AWS_REGION AWS_ACCOUNT_ID CLUSTER SERVICE_NAME VPC_ID PRIVATE_SUBNET_A PRIVATE_SUBNET_B
  TASK_SECURITY_GROUP ECR_REPOSITORY IMAGE_URI DESIRED_COUNT MIN_TASKS MAX_TASKS LOG_GROUP LOG_LEVEL
  TASK_ROLE_NAME EXECUTION_ROLE_NAME KVS_STREAM_PREFIX EVENTS_STREAM SNAPSHOT_BUCKET SNAPSHOT_PREFIX
  STATE_TABLE EVENTS_TABLE CHECKPOINT_TABLE LEASE_TABLE METRICS_NAMESPACE CAMERAS_PER_TASK)
for var in "${required[@]}"; do
  grep -q "^${var}=." "$env_file" || [ -n "${!var:-}" ] || die "$var is not set in $env_file"
done
value() { # the environment's value, else the file's
  local name="$1"
  if [ -n "${!name:-}" ]; then echo "${!name}"; else grep "^${name}=" "$env_file" | tail -n 1 | cut -d= -f2-; fi
}
AWS_REGION="$(value AWS_REGION)"
export AWS_REGION AWS_DEFAULT_REGION="$AWS_REGION"
cluster="$(value CLUSTER)"
service="$(value SERVICE_NAME)"
repository="$(value ECR_REPOSITORY)"
log_group="$(value LOG_GROUP)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
render() { # template → rendered JSON file path
  local out
  out="$work/$(basename "$1")"
  python3 "$here/render.py" "$env_file" "$1" >"$out"
  echo "$out"
}

# --- ECR -------------------------------------------------------------------------------------
if aws ecr describe-repositories --repository-names "$repository" >/dev/null 2>&1; then
  say "ECR repository $repository exists"
else
  aws ecr create-repository --cli-input-json "file://$(render "$here/templates/ecr-repository.json")" >/dev/null
  say "created ECR repository $repository (scan on push, immutable tags)"
fi
aws ecr put-lifecycle-policy --repository-name "$repository" \
  --lifecycle-policy-text "file://$(render "$here/templates/ecr-lifecycle-policy.json")" >/dev/null
say "lifecycle policy set: untagged after 7 days, 10 tagged kept"

# --- IAM -------------------------------------------------------------------------------------
ensure_role() { # name, policy template
  local role="$1" policy="$2"
  if aws iam get-role --role-name "$role" >/dev/null 2>&1; then
    aws iam update-assume-role-policy --role-name "$role" \
      --policy-document "file://$(render "$here/iam/ecs-tasks-trust.json")"
  else
    aws iam create-role --role-name "$role" \
      --assume-role-policy-document "file://$(render "$here/iam/ecs-tasks-trust.json")" >/dev/null
    say "created role $role"
  fi
  aws iam put-role-policy --role-name "$role" --policy-name "$role" \
    --policy-document "file://$(render "$policy")"
  say "role $role: inline policy from $(basename "$policy")"
}
ensure_role "$(value TASK_ROLE_NAME)" "$here/iam/task-role-policy.json"
ensure_role "$(value EXECUTION_ROLE_NAME)" "$here/iam/execution-role-policy.json"

# --- Logs ------------------------------------------------------------------------------------
if [ "$(aws logs describe-log-groups --log-group-name-prefix "$log_group" \
  --query "logGroups[?logGroupName=='$log_group'] | length(@)" --output text)" != 1 ]; then
  aws logs create-log-group --log-group-name "$log_group"
  aws logs put-retention-policy --log-group-name "$log_group" --retention-in-days 30
  say "created log group $log_group (30 days)"
fi

# --- Target group ----------------------------------------------------------------------------
tg_arn="$(aws elbv2 describe-target-groups --names "$service" \
  --query 'TargetGroups[0].TargetGroupArn' --output text 2>/dev/null || true)"
if [ -z "$tg_arn" ] || [ "$tg_arn" = "None" ]; then
  tg_arn="$(aws elbv2 create-target-group --cli-input-json "file://$(render "$here/templates/target-group.json")" \
    --query 'TargetGroups[0].TargetGroupArn' --output text)"
  say "created target group $tg_arn"
fi
export TARGET_GROUP_ARN="$tg_arn"
aws elbv2 modify-target-group-attributes \
  --cli-input-json "file://$(render "$here/templates/target-group-attributes.json")" >/dev/null
say "target group: /healthz, slow start 30 s, deregistration delay 20 s"

# --- Task definition and service ---------------------------------------------------------------
TASK_DEFINITION="$(aws ecs register-task-definition \
  --cli-input-json "file://$(render "$here/templates/task-definition.json")" \
  --query 'taskDefinition.taskDefinitionArn' --output text)"
export TASK_DEFINITION
say "registered $TASK_DEFINITION"

status="$(aws ecs describe-services --cluster "$cluster" --services "$service" \
  --query 'services[0].status' --output text 2>/dev/null || true)"
if [ "$status" = "ACTIVE" ]; then
  aws ecs update-service --cluster "$cluster" --service "$service" --task-definition "$TASK_DEFINITION" \
    --enable-execute-command --health-check-grace-period-seconds 60 \
    --deployment-configuration 'deploymentCircuitBreaker={enable=true,rollback=true},maximumPercent=200,minimumHealthyPercent=100' \
    >/dev/null
  say "updated service $service"
else
  aws ecs create-service --cli-input-json "file://$(render "$here/templates/service.json")" >/dev/null
  say "created service $service"
fi

# --- Auto scaling ------------------------------------------------------------------------------
aws application-autoscaling register-scalable-target \
  --cli-input-json "file://$(render "$here/templates/scalable-target.json")"
aws application-autoscaling put-scaling-policy \
  --cli-input-json "file://$(render "$here/templates/scaling-policy.json")" >/dev/null
say "auto scaling: $(value MIN_TASKS)..$(value MAX_TASKS) tasks, target-tracking CamerasOwned at $(value CAMERAS_PER_TASK) per task"

say "waiting for $service to be stable (the circuit breaker rolls back a failing deployment)"
aws ecs wait services-stable --cluster "$cluster" --services "$service"
say "done: $service runs $TASK_DEFINITION"
