#!/usr/bin/env python3
"""What ecs/deploy.sh sends to AWS, computed from one deployment's env file (ecs/env/<name>.env)
and the stacks' outputs. Pure: it never calls AWS, so `deploy.sh --dry-run` and
tests/deploy/check_deploy.py use it too.

Usage:
  plan.py params ENV_FILE STACK           CloudFormation --parameters JSON (repository|infra|scaling)
  plan.py render ENV_FILE TEMPLATE        an ecs/templates/*.json document, ${VAR}s filled
  plan.py config ENV_FILE                 the service YAML (CONFIG_TEMPLATE) with ${VAR}s filled
  plan.py value ENV_FILE KEY              one setting (derived ones included: NAME, CONFIG_PARAMETER)
  plan.py outputs ENV_FILE < OUTPUTS.json  shell exports of the infra stack's outputs (describe-stacks)
  plan.py check ENV_FILE                  validate everything above without AWS (the dry run)

Stack outputs reach `render` and `config` as environment variables (deploy.sh exports them
under the names in OUTPUTS); a variable set in the environment wins over the file.
Fails (exit 1, naming what) on a missing setting, an unknown template parameter, a value a
template's AllowedPattern/AllowedValues rejects, or a document that is not JSON after rendering.
"""
import json
import os
import re
import shlex
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")

STACKS = {
    "repository": "cfn/repository.yaml",
    "infra": "cfn/infra.yaml",
    "scaling": "cfn/scaling.yaml",
}
# Template parameter → env setting.
PARAMETERS = {
    "repository": {"RepositoryName": "REPOSITORY_NAME"},
    "infra": {
        "Name": "NAME", "VpcId": "VPC_ID", "PrivateSubnetIds": "PRIVATE_SUBNET_IDS",
        "AlbSubnetIds": "ALB_SUBNET_IDS", "AlbScheme": "ALB_SCHEME", "AlbIngressCidr": "ALB_INGRESS_CIDR",
        "CertificateArn": "CERTIFICATE_ARN", "ExistingListenerArn": "EXISTING_LISTENER_ARN",
        "ExistingAlbSecurityGroupId": "EXISTING_ALB_SECURITY_GROUP_ID",
        "ListenerRulePriority": "LISTENER_RULE_PRIORITY", "LivePage": "LIVE_PAGE", "InstanceType": "INSTANCE_TYPE",
        "MaxInstances": "MAX_INSTANCES", "KvsStreamPrefix": "KVS_STREAM_PREFIX",
        "MetricsNamespace": "METRICS_NAMESPACE", "ConfigParameterName": "CONFIG_PARAMETER",
        "AlarmEmail": "ALARM_EMAIL", "GpuAmiId": "GPU_AMI_ID", "RoleBoundaryArn": "ROLE_BOUNDARY_ARN",
        "ApiTokenParameterName": "API_TOKEN_PARAMETER", "LiveUiOidcIssuer": "LIVE_UI_OIDC_ISSUER",
        "LiveUiOidcAuthorizationEndpoint": "LIVE_UI_OIDC_AUTHORIZATION_ENDPOINT",
        "LiveUiOidcTokenEndpoint": "LIVE_UI_OIDC_TOKEN_ENDPOINT", "LiveUiOidcUserInfoEndpoint": "LIVE_UI_OIDC_USER_INFO_ENDPOINT",
        "LiveUiOidcClientId": "LIVE_UI_OIDC_CLIENT_ID", "LiveUiOidcClientSecretName": "LIVE_UI_OIDC_CLIENT_SECRET_NAME",
    },
    "scaling": {
        "ClusterName": "NAME", "ServiceName": "NAME", "MetricsNamespace": "METRICS_NAMESPACE",
        "MinTasks": "MIN_TASKS", "MaxTasks": "MAX_TASKS", "CamerasPerTask": "CAMERAS_PER_TASK",
    },
}
# Settings that may be empty (the template's default or condition handles it).
OPTIONAL = {"CERTIFICATE_ARN", "EXISTING_LISTENER_ARN", "EXISTING_ALB_SECURITY_GROUP_ID", "ALARM_EMAIL",
            "CFN_ROLE_ARN", "ALB_SUBNET_IDS", "GPU_AMI_PARAMETER", "GPU_AMI_ID", "ROLE_BOUNDARY_ARN",
            "API_TOKEN_PARAMETER", "LIVE_UI_OIDC_ISSUER", "LIVE_UI_OIDC_AUTHORIZATION_ENDPOINT",
            "LIVE_UI_OIDC_TOKEN_ENDPOINT", "LIVE_UI_OIDC_USER_INFO_ENDPOINT", "LIVE_UI_OIDC_CLIENT_ID",
            "LIVE_UI_OIDC_CLIENT_SECRET_NAME"}
# infra stack output → the variable templates and the config use.
OUTPUTS = {
    "ClusterName": "CLUSTER", "CapacityProviderName": "CAPACITY_PROVIDER", "TargetGroupArn": "TARGET_GROUP_ARN",
    "TaskSecurityGroupId": "TASK_SECURITY_GROUP", "TaskRoleArn": "TASK_ROLE_ARN",
    "ExecutionRoleArn": "EXECUTION_ROLE_ARN", "LogGroupName": "LOG_GROUP", "EventsStreamName": "EVENTS_STREAM",
    "SnapshotBucketName": "SNAPSHOT_BUCKET", "StateTableName": "STATE_TABLE", "EventsTableName": "EVENTS_TABLE",
    "CheckpointTableName": "CHECKPOINT_TABLE", "LeaseTableName": "LEASE_TABLE", "AlarmTopicArn": "ALARM_TOPIC_ARN",
    "DeploymentAlarmNames": "DEPLOYMENT_ALARMS",
}


class PlanError(Exception):
    pass


def read_env(path):
    values = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
                raise PlanError(f"{path}:{n}: expected KEY=VALUE, got {line!r}")
            values[key] = value
    return values


def settings(env_file, environ=None):
    """The env file's settings, the environment's overrides, and the derived names."""
    values = read_env(env_file)
    environ = os.environ if environ is None else environ
    values.update({k: v for k, v in environ.items() if k in values or k in OUTPUTS.values()
                   or k in ("IMAGE_URI", "TASK_DEFINITION", "CONFIG_SHA256", "CONFIG_VERSION", "GPU_AMI_PARAMETER",
                            "GPU_AMI_ID", "DEPLOYMENT_ALARMS")})
    for key in ("PREFIX", "ENVIRONMENT"):
        if not values.get(key):
            raise PlanError(f"{env_file}: {key} is not set")
    values.setdefault("NAME", f"{values['PREFIX']}-{values['ENVIRONMENT']}")
    values.setdefault("CONFIG_PARAMETER", f"/{values['PREFIX']}/{values['ENVIRONMENT']}/config")
    # infra.yaml names it so; the stack output says the same where the endpoint reports it.
    values.setdefault("CAPACITY_PROVIDER", f"{values['NAME']}-gpu")
    return values


def render_text(text, values, name):
    missing = sorted({m for m in PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise PlanError(f"{name}: no value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def render(text, values, name="template"):
    out = render_text(text, values, name)
    try:
        return json.loads(out)
    except ValueError as e:
        raise PlanError(f"{name}: not JSON after rendering: {e}")


def template_parameters(stack):
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # CloudFormation's short tags (!Ref, !Sub, …) as plain values: only Parameters are read here.
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    with open(os.path.join(HERE, STACKS[stack])) as f:
        return yaml.load(f, Loader=Loader).get("Parameters", {})


def stack_parameters(stack, values):
    declared = template_parameters(stack)
    params, problems = [], []
    for key, setting in PARAMETERS[stack].items():
        if key not in declared:
            problems.append(f"{STACKS[stack]} has no parameter {key}")
            continue
        value = values.get(setting, "")
        if value == "":
            if setting in OPTIONAL:
                continue  # the template's default
            problems.append(f"{setting} is not set (stack {stack}, parameter {key})")
            continue
        spec = declared[key]
        allowed = spec.get("AllowedValues")
        if allowed and value not in [str(a) for a in allowed]:
            problems.append(f"{setting}={value}: {key} allows {allowed}")
        pattern = spec.get("AllowedPattern")
        items = value.split(",") if spec.get("Type", "").startswith(("List<", "CommaDelimitedList")) else [value]
        if pattern and not all(re.fullmatch(pattern, v) for v in items):
            problems.append(f"{setting}={value}: {key} must match {pattern}")
        if spec.get("Type") == "Number" and not re.fullmatch(r"-?[0-9.]+", value):
            problems.append(f"{setting}={value}: {key} is a number")
        params.append({"ParameterKey": key, "ParameterValue": value})
    for key, spec in declared.items():
        if "Default" not in spec and key not in PARAMETERS[stack]:
            problems.append(f"{STACKS[stack]}: required parameter {key} has no setting")
    if problems:
        raise PlanError("; ".join(problems))
    return params


def service_config(values):
    path = os.path.join(ROOT, values.get("CONFIG_TEMPLATE") or "ecs/config/service.yaml")
    with open(path) as f:
        return render_text(f.read(), values, os.path.relpath(path, ROOT))


def placeholder_outputs(values):
    """Stand-ins for the stacks' outputs, for the dry run."""
    account, region, name = "123456789012", values.get("AWS_REGION", "eu-west-1"), values["NAME"]
    return {
        "CLUSTER": name, "CAPACITY_PROVIDER": f"{name}-gpu",
        "TARGET_GROUP_ARN": f"arn:aws:elasticloadbalancing:{region}:{account}:targetgroup/{name}/0123456789abcdef",
        "TASK_SECURITY_GROUP": "sg-0123456789abcdef0",
        "TASK_ROLE_ARN": f"arn:aws:iam::{account}:role/{name}-task",
        "EXECUTION_ROLE_ARN": f"arn:aws:iam::{account}:role/{name}-execution",
        "LOG_GROUP": f"/ecs/{name}", "EVENTS_STREAM": f"{name}-events",
        "SNAPSHOT_BUCKET": f"{name}-snapshots-{account}", "STATE_TABLE": f"{name}-camera-state",
        "EVENTS_TABLE": f"{name}-events", "CHECKPOINT_TABLE": f"{name}-checkpoints", "LEASE_TABLE": f"{name}-leases",
        "ALARM_TOPIC_ARN": f"arn:aws:sns:{region}:{account}:{name}-alarms",
        "IMAGE_URI": f"{account}.dkr.ecr.{region}.amazonaws.com/{values.get('REPOSITORY_NAME', 'kvs-infer')}:dry-run",
        "TASK_DEFINITION": f"arn:aws:ecs:{region}:{account}:task-definition/{name}:1",
        "CONFIG_SHA256": "0" * 64, "CONFIG_VERSION": "1",
        "DEPLOYMENT_ALARMS": f"{name}-target-5xx,{name}-camera-lag",
    }


def with_subnets(values):
    """PRIVATE_SUBNET_IDS as the JSON list the service template embeds."""
    subnets = [s for s in values.get("PRIVATE_SUBNET_IDS", "").split(",") if s]
    alarms = [a for a in values.get("DEPLOYMENT_ALARMS", "").split(",") if a]
    return dict(values, PRIVATE_SUBNETS_JSON=json.dumps(subnets), DEPLOYMENT_ALARMS_JSON=json.dumps(alarms))


def render_template(name, values):
    with open(os.path.join(HERE, name)) as f:
        return render(f.read(), with_subnets(values), name)


def check(env_file):
    """The dry run: every stack's parameters, the config and both documents, without AWS."""
    values = settings(env_file)
    if values.get("CFN_ROLE_ARN") and not values.get("ROLE_BOUNDARY_ARN"):
        raise PlanError("CFN_ROLE_ARN is set but ROLE_BOUNDARY_ARN is not: the CloudFormation role creates roles only "
                        "with the boundary (deploy-role.yaml's RoleBoundaryArn output)")
    for stack in STACKS:
        stack_parameters(stack, values)
        print(f"ok   stack {stack}: parameters valid for {STACKS[stack]}")
    filled = dict(placeholder_outputs(values), **values)
    config = service_config(filled)
    print(f"ok   config: {len(config)} bytes for {values['CONFIG_PARAMETER']} (SSM's advanced tier holds 8 KB)")
    if len(config.encode()) > 8192:
        raise PlanError(f"the rendered config is {len(config.encode())} bytes, over SSM's 8 KB parameter limit")
    documents = {}
    for name in ("templates/task-definition.json", "templates/service.json"):
        documents[name] = render_template(name, filled)
        print(f"ok   {name}: renders to JSON")
    try:
        from botocore.session import get_session
        from botocore.validate import ParamValidator
    except ImportError:
        print("skip botocore not installed: the documents were not checked against the ECS API model")
        return documents
    model = get_session().get_service_model("ecs")
    for name, operation in (("templates/task-definition.json", "RegisterTaskDefinition"),
                            ("templates/service.json", "CreateService")):
        report = ParamValidator().validate(documents[name], model.operation_model(operation).input_shape)
        if report.has_errors():
            raise PlanError(f"{name}: not a valid ecs {operation}: {report.generate_report()}")
        print(f"ok   {name}: valid ecs {operation}")
    return documents


def main(argv):
    if len(argv) < 3:
        raise PlanError(__doc__)
    command, env_file = argv[1], argv[2]
    values = settings(env_file)
    if command == "params" and len(argv) == 4:
        print(json.dumps(stack_parameters(argv[3], values)))
    elif command == "render" and len(argv) == 4:
        print(json.dumps(render_template(argv[3], values), indent=2))
    elif command == "config" and len(argv) == 3:
        sys.stdout.write(service_config(values))
    elif command == "value" and len(argv) == 4:
        if argv[3] not in values:
            raise PlanError(f"{argv[3]} is not set in {env_file}")
        print(values[argv[3]])
    elif command == "outputs" and len(argv) == 3:
        # stack outputs JSON (describe-stacks) on stdin → export lines for the shell
        for o in json.load(sys.stdin):
            if o["OutputKey"] in OUTPUTS:
                print(f"export {OUTPUTS[o['OutputKey']]}={shlex.quote(o['OutputValue'])}")
    elif command == "check" and len(argv) == 3:
        check(env_file)
    else:
        raise PlanError(__doc__)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except (PlanError, OSError) as e:
        print(f"plan: {e}", file=sys.stderr)
        sys.exit(1)
