#!/usr/bin/env bash
# Brings one kvs-infer deployment up, or up to date, from an empty account:
#   1. stack <PREFIX>-repository   (ecs/cfn/repository.yaml: the ECR repository)
#   2. stack <NAME>-infra          (ecs/cfn/infra.yaml: cluster, GPU capacity, ALB, data, roles, alarms)
#   3. the service's config        (CONFIG_TEMPLATE rendered with the infra outputs → SSM parameter)
#   4. the task definition and the ECS service (created, or updated to the new revision)
#   5. stack <NAME>-scaling        (ecs/cfn/scaling.yaml: target tracking on CamerasOwned)
#   6. the rollout: waits until the service's deployment is COMPLETED on the new task definition;
#      exits 1 saying so when the circuit breaker rolled it back (or it timed out).
# Every stack goes through a change set, printed before it is executed.
#
# Usage: ecs/deploy.sh [--dry-run] [--refresh-ami] [--image URI] ENV [repository | rollback REVISION]
#   ENV          ecs/env/ENV.env (or a path to an env file); NAME = <PREFIX>-<ENVIRONMENT>
#   repository   only step 1 (a pipeline runs it before pushing the image)
#   rollback N   only the service: back to task definition revision N (its image digest and the
#                config version it names), then step 6
# A stack whose first create failed (ROLLBACK_COMPLETE, or ROLLBACK_FAILED where the load
# balancer's deletion protection stopped the rollback) is deleted, saying so, and created again:
# its stateful resources are RetainExceptOnCreate, so nothing of it is left to collide with.
#   --image URI  the image to run (REPO@sha256:… or REPO:tag); required for a full deploy
#   --dry-run    render and validate everything (parameters, config, task definition, service,
#                cfn-lint when installed) without calling AWS
#   --refresh-ami  move the GPU instances to the AMI the public SSM parameter recommends now
#                (GPU_AMI_PARAMETER); otherwise the AMI stays the one the stack runs (or
#                GPU_AMI_ID when the env file pins one). A changed AMI starts an instance refresh.
# Environment: ROLLOUT_TIMEOUT (seconds, default 2400), POLL_SECONDS (default 15), and the AWS
# CLI's own (AWS_PROFILE, AWS_ENDPOINT_URL, …). Credentials never come from the env file.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
die() { echo "deploy: $*" >&2; exit 1; }
say() { echo "deploy: $*"; }

dry_run=false image="" only="" refresh_ami=false
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=true ;;
    --refresh-ami) refresh_ami=true ;;
    --image) image="${2:?--image needs a URI}"; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    repository) only=repository ;;
    rollback) only=rollback; revision="${2:?rollback needs a task definition revision}"; shift ;;
    *) [ -z "${env_name:-}" ] || die "unexpected $1 (one ENV only)"; env_name="$1" ;;
  esac
  shift
done
[ -n "${env_name:-}" ] || die "usage: ecs/deploy.sh [--dry-run] [--image URI] ENV [repository]"
if [ -f "$env_name" ]; then env_file="$env_name"; else env_file="$here/env/$env_name.env"; fi
[ -f "$env_file" ] || die "no $env_file (copy ecs/env/example.env and fill it in)"

python="${PYTHON:-python3}"
plan() { "$python" "$here/plan.py" "$@"; }
setting() { plan value "$env_file" "$1"; }

if $dry_run; then
  say "dry run of $env_file: nothing is sent to AWS"
  plan check "$env_file"
  if command -v cfn-lint >/dev/null 2>&1; then
    cfn-lint "$here"/cfn/*.yaml && echo "ok   cfn-lint: ecs/cfn/*.yaml"
  else
    echo "skip cfn-lint not installed (make deploy-check runs it)"
  fi
  say "dry run passed"
  exit 0
fi

command -v aws >/dev/null 2>&1 || die "the AWS CLI is required"
AWS_REGION="$(setting AWS_REGION)"
export AWS_REGION AWS_DEFAULT_REGION="$AWS_REGION"
NAME="$(setting NAME)"
prefix="$(setting PREFIX)"
cfn_role="$(setting CFN_ROLE_ARN 2>/dev/null || true)"
poll="${POLL_SECONDS:-15}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

stack_status() { # name → status, or NONE
  aws cloudformation describe-stacks --stack-name "$1" --query 'Stacks[0].StackStatus' --output text 2>/dev/null || echo NONE
}

# remove_failed_create NAME STATUS: a stack whose first create failed is deleted (after its
# failure is shown), so the create can run again.
remove_failed_create() {
  local stack="$1" status="$2" lb
  say "stack $stack failed to create earlier ($status); why:"
  # shellcheck disable=SC2016 # a JMESPath literal, not a shell expansion
  aws cloudformation describe-stack-events --stack-name "$stack" --max-items 30 \
    --query 'StackEvents[?contains(ResourceStatus, `FAILED`)].[LogicalResourceId,ResourceStatus,ResourceStatusReason]' \
    --output table >&2 || true
  if [ "$status" = ROLLBACK_FAILED ]; then
    # The load balancer's deletion protection is what stops a rollback: lift it first.
    for lb in $(aws cloudformation describe-stack-resources --stack-name "$stack" \
        --query "StackResources[?ResourceType=='AWS::ElasticLoadBalancingV2::LoadBalancer'].PhysicalResourceId" --output text); do
      [ "$lb" = None ] || aws elbv2 modify-load-balancer-attributes --load-balancer-arn "$lb" \
        --attributes Key=deletion_protection.enabled,Value=false >/dev/null
    done
  fi
  local args=(--stack-name "$stack")
  [ -n "$cfn_role" ] && args+=(--role-arn "$cfn_role")
  aws cloudformation delete-stack "${args[@]}"
  aws cloudformation wait stack-delete-complete --stack-name "$stack" \
    || die "stack $stack: the failed create could not be deleted ($(stack_status "$stack")); delete it by hand, then deploy again"
  say "stack $stack: the failed create is deleted (nothing of it is kept: its stateful resources are RetainExceptOnCreate); creating it again"
}

# deploy_stack NAME STACK_KIND: a change set for the template, shown, then executed and waited on.
deploy_stack() {
  local stack="$1" kind="$2" status type change_set params reason
  params="$work/$kind-params.json"
  plan params "$env_file" "$kind" >"$params"
  status="$(stack_status "$stack")"
  case "$status" in
    NONE|REVIEW_IN_PROGRESS) type=CREATE ;;
    ROLLBACK_COMPLETE|ROLLBACK_FAILED)
      remove_failed_create "$stack" "$status"
      type=CREATE ;;
    *_IN_PROGRESS) die "stack $stack is busy ($status); wait for it to finish" ;;
    *) type=UPDATE ;;
  esac
  change_set="deploy-$(date -u +%Y%m%d%H%M%S)"
  local args=(--stack-name "$stack" --change-set-name "$change_set" --change-set-type "$type"
    --template-body "file://$here/cfn/$kind.yaml" --parameters "file://$params"
    --capabilities CAPABILITY_NAMED_IAM --tags "Key=service,Value=$prefix")
  [ -n "$cfn_role" ] && args+=(--role-arn "$cfn_role")
  if ! aws cloudformation create-change-set "${args[@]}" >/dev/null 2>"$work/change-set.err"; then
    # Some endpoints refuse an empty change set outright instead of failing it.
    if grep -q "No updates are to be performed" "$work/change-set.err"; then
      say "stack $stack: no changes"
      return 0
    fi
    die "stack $stack: cannot create a change set: $(cat "$work/change-set.err")"
  fi
  if ! aws cloudformation wait change-set-create-complete --stack-name "$stack" --change-set-name "$change_set" 2>/dev/null; then
    reason="$(aws cloudformation describe-change-set --stack-name "$stack" --change-set-name "$change_set" \
      --query StatusReason --output text)"
    if [[ "$reason" == *"didn't contain changes"* || "$reason" == *"No updates"* ]]; then
      aws cloudformation delete-change-set --stack-name "$stack" --change-set-name "$change_set"
      say "stack $stack: no changes"
      return 0
    fi
    die "stack $stack: change set failed: $reason"
  fi
  say "stack $stack: change set $change_set ($type):"
  aws cloudformation describe-change-set --stack-name "$stack" --change-set-name "$change_set" \
    --query 'Changes[].ResourceChange.[Action,LogicalResourceId,ResourceType,Replacement]' --output table
  aws cloudformation execute-change-set --stack-name "$stack" --change-set-name "$change_set"
  local waiter=stack-update-complete
  [ "$type" = CREATE ] && waiter="stack-create-complete"
  if ! aws cloudformation wait "$waiter" --stack-name "$stack"; then
    # shellcheck disable=SC2016 # a JMESPath literal, not a shell expansion
    aws cloudformation describe-stack-events --stack-name "$stack" --max-items 30 \
      --query 'StackEvents[?contains(ResourceStatus, `FAILED`)].[LogicalResourceId,ResourceStatus,ResourceStatusReason]' \
      --output table >&2 || true
    die "stack $stack: $(stack_status "$stack")"
  fi
  say "stack $stack: $(stack_status "$stack")"
}

# --- 1. repository ------------------------------------------------------------------------------
deploy_stack "$prefix-repository" repository
if [ "$only" = repository ]; then
  aws cloudformation describe-stacks --stack-name "$prefix-repository" \
    --query "Stacks[0].Outputs[?OutputKey=='RepositoryUri'].OutputValue" --output text
  exit 0
fi
if [ "$only" = rollback ]; then
  CLUSTER="$NAME"
  TASK_DEFINITION="$(aws ecs describe-task-definition --task-definition "$NAME:$revision" \
    --query 'taskDefinition.taskDefinitionArn' --output text)" || die "no task definition $NAME:$revision"
  aws ecs update-service --cluster "$CLUSTER" --service "$NAME" --task-definition "$TASK_DEFINITION" >/dev/null
  say "rolling $NAME back to $TASK_DEFINITION (its image digest, and the config version it names)"
fi
[ "$only" = rollback ] || [ -n "$image" ] || die "--image URI is required (the image to run)"
if [ "$only" != rollback ]; then

# --- 2. infrastructure --------------------------------------------------------------------------
# The GPU AMI is pinned: the stack keeps the one it runs unless the env file names one
# (GPU_AMI_ID) or --refresh-ami asks for the one recommended now.
current_ami="$(aws cloudformation describe-stacks --stack-name "$NAME-infra" \
  --query "Stacks[0].Parameters[?ParameterKey=='GpuAmiId'].ParameterValue" --output text 2>/dev/null || true)"
[ "$current_ami" = None ] && current_ami=""
GPU_AMI_ID="$(setting GPU_AMI_ID 2>/dev/null || true)"
if [ -z "$GPU_AMI_ID" ] && [ -n "$current_ami" ] && ! $refresh_ami; then
  GPU_AMI_ID="$current_ami"
elif [ -z "$GPU_AMI_ID" ]; then
  ami_parameter="$(setting GPU_AMI_PARAMETER 2>/dev/null || true)"
  ami_parameter="${ami_parameter:-/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id}"
  GPU_AMI_ID="$(aws ssm get-parameter --name "$ami_parameter" --query Parameter.Value --output text)" \
    || die "cannot resolve the GPU AMI from $ami_parameter"
fi
export GPU_AMI_ID
say "GPU AMI: $GPU_AMI_ID${current_ami:+ (the stack runs $current_ami)}"
deploy_stack "$NAME-infra" infra
if [ -n "$current_ami" ] && [ "$current_ami" != "$GPU_AMI_ID" ]; then
  # New instances come from the new launch template version; the refresh replaces the old ones
  # one spare at a time, protected (busy) instances included once ECS has drained them.
  aws autoscaling start-instance-refresh --auto-scaling-group-name "$NAME-gpu" --preferences \
    '{"MinHealthyPercentage":100,"MaxHealthyPercentage":200,"InstanceWarmup":300,"SkipMatching":true,"ScaleInProtectedInstances":"Refresh","StandbyInstances":"Terminate"}' \
    >/dev/null || die "the GPU AMI changed ($current_ami -> $GPU_AMI_ID) but the instance refresh did not start"
  say "GPU AMI changed ($current_ami -> $GPU_AMI_ID): instance refresh of $NAME-gpu started"
fi
aws cloudformation describe-stacks --stack-name "$NAME-infra" --query 'Stacks[0].Outputs' --output json \
  | plan outputs "$env_file" >"$work/outputs.sh"
# shellcheck disable=SC1091
. "$work/outputs.sh"
export IMAGE_URI="$image"
CAPACITY_PROVIDER="${CAPACITY_PROVIDER:-$(setting CAPACITY_PROVIDER)}"

# --- 3. config ------------------------------------------------------------------------------------
parameter="$(setting CONFIG_PARAMETER)"
plan config "$env_file" >"$work/config.yaml"
CONFIG_SHA256="$(sha256sum "$work/config.yaml" | cut -d' ' -f1)"
export CONFIG_SHA256
# The task definition names this version (ssm:NAME:VERSION) and its digest: a rollback to an
# earlier revision runs with the config it was rendered with, and the service refuses another.
CONFIG_VERSION="$(aws ssm put-parameter --name "$parameter" --type String --tier Intelligent-Tiering --overwrite \
  --value "file://$work/config.yaml" --query Version --output text)"
export CONFIG_VERSION
say "config: $parameter version $CONFIG_VERSION (sha256 ${CONFIG_SHA256:0:12}; a change rolls the service)"

# --- 4. task definition and service -----------------------------------------------------------------
plan render "$env_file" templates/task-definition.json >"$work/task-definition.json"
TASK_DEFINITION="$(aws ecs register-task-definition --cli-input-json "file://$work/task-definition.json" \
  --query 'taskDefinition.taskDefinitionArn' --output text)"
export TASK_DEFINITION
say "registered $TASK_DEFINITION ($image)"

status="$(aws ecs describe-services --cluster "$CLUSTER" --services "$NAME" \
  --query 'services[0].status' --output text 2>/dev/null || true)"
if [ "$status" = ACTIVE ]; then
  # A deployment rolls back when its tasks fail (the circuit breaker) or when the 5xx or lag
  # alarm fires during it (DEPLOYMENT_ALARMS, the infra stack's DeploymentAlarmNames).
  aws ecs update-service --cluster "$CLUSTER" --service "$NAME" --task-definition "$TASK_DEFINITION" \
    --capacity-provider-strategy "capacityProvider=$CAPACITY_PROVIDER,weight=1,base=0" \
    --deployment-configuration "deploymentCircuitBreaker={enable=true,rollback=true},alarms={alarmNames=[$DEPLOYMENT_ALARMS],enable=true,rollback=true},maximumPercent=200,minimumHealthyPercent=100" \
    --health-check-grace-period-seconds 60 --disable-execute-command >/dev/null
  say "updated service $NAME"
else
  plan render "$env_file" templates/service.json >"$work/service.json"
  aws ecs create-service --cli-input-json "file://$work/service.json" >/dev/null
  say "created service $NAME in cluster $CLUSTER, behind $TARGET_GROUP_ARN"
fi

# --- 5. scaling -------------------------------------------------------------------------------------
deploy_stack "$NAME-scaling" scaling

fi

# --- 6. rollout ---------------------------------------------------------------------------------------
say "waiting for the rollout of $TASK_DEFINITION (the circuit breaker rolls back a deployment that fails)"
deadline=$(( $(date +%s) + ${ROLLOUT_TIMEOUT:-2400} ))
while :; do
  aws ecs describe-services --cluster "$CLUSTER" --services "$NAME" --output json >"$work/service-now.json"
  read -r running state reason < <("$python" - "$work/service-now.json" "$TASK_DEFINITION" <<'PY'
import json, sys
service = json.load(open(sys.argv[1]))["services"][0]
wanted = sys.argv[2]
ours = [d for d in service.get("deployments", []) if d.get("taskDefinition") == wanted]
failed = [d for d in ours if d.get("rolloutState") == "FAILED"]
primary = next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), {})
state = "FAILED" if failed or service.get("taskDefinition") != wanted else primary.get("rolloutState", "IN_PROGRESS")
reason = (failed[0] if failed else primary).get("rolloutStateReason", "").replace("\n", " ")
print(service.get("taskDefinition"), state, reason or "-")
PY
)
  case "$state" in
    COMPLETED)
      say "rollout COMPLETED: $NAME runs $running"
      break ;;
    FAILED)
      die "rollout FAILED: the deployment circuit breaker rolled $NAME back to $running ($reason); $TASK_DEFINITION did not become healthy (see the stopped tasks and /healthz in docs/health.md)" ;;
  esac
  [ "$(date +%s)" -lt "$deadline" ] || die "rollout of $TASK_DEFINITION still $state after ${ROLLOUT_TIMEOUT:-2400} s ($reason)"
  sleep "$poll"
done
