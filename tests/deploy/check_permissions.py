"""The CloudFormation role grants what the stacks need (`make deploy-check`).

Every resource type in every stack the role deploys (repository, infra, scaling, the GPU
recovery function) has a resource schema, and cfn-lint ships AWS's copies of them: each lists the
IAM actions its create, update and delete handlers call (`handlers.<op>.permissions`). This
check reads them and fails for every action the role's policy does not allow, naming the
resource types that need it. It also fails for an action wildcard (`service:*`, `ec2:Describe*`)
and checks that the service-linked roles those resources need can be created by the role.
Exit 0 when nothing is missing.
"""
import fnmatch
import json
import os
import re
import sys

import cfnlint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_deploy import READ_PATTERN, Template, as_list, iam_actions, statements  # noqa: E402

# Stacks deployed through the CloudFormation role (ecs/deploy.sh, the deploy workflow).
STACKS = ["ecs/cfn/repository.yaml", "ecs/cfn/infra.yaml", "ecs/cfn/scaling.yaml",
          "crates/kvs-infer-recovery/template.yaml"]
OPERATIONS = ("create", "update", "delete")
# Actions the schemas list that the role denies on purpose, each for the reason given.
DENIED = {
    "iam:DeleteRolePermissionsBoundary": "every role of the stacks keeps the permissions boundary",
}
# In a fresh account the first resource of these types creates its service's service-linked role.
SERVICE_LINKED = {
    "AWS::ECS::Cluster": "ecs.amazonaws.com",
    "AWS::ECS::CapacityProvider": "ecs.amazonaws.com",
    "AWS::AutoScaling::AutoScalingGroup": "autoscaling.amazonaws.com",
    "AWS::ElasticLoadBalancingV2::LoadBalancer": "elasticloadbalancing.amazonaws.com",
    "AWS::ApplicationAutoScaling::ScalableTarget": "ecs.application-autoscaling.amazonaws.com",
}


def schemas(region="us-east-1"):
    base = os.path.join(os.path.dirname(cfnlint.__file__), "data", "schemas")
    with open(os.path.join(base, "providers", f"{region}.json")) as f:
        index = json.load(f)

    def schema(kind):
        name = index.get(kind)
        if name is None:
            return None
        with open(os.path.join(base, "resources", f"{name}.json")) as f:
            return json.load(f)
    return schema


def grantable(action, actions):
    """Whether a policy can name `action`: a real IAM action, or a pattern of some (schemas name a
    few API operations that IAM authorises under another action, e.g. `s3:DeleteBucketCors`
    under `s3:PutBucketCORS`; those cannot be granted, nor need to be)."""
    svc, name = action.lower().split(":", 1)
    return any(fnmatch.fnmatch(a, name) for a in actions.get(svc, ()))


def needed_actions():
    """action → the resource types (and operations) whose handlers call it."""
    schema = schemas()
    needed, types, unknown = {}, set(), []
    for path in STACKS:
        for logical, resource in Template(os.path.join(ROOT, path))["Resources"].items():
            kind = resource["Type"]
            if kind.startswith("Custom::"):
                continue
            types.add(kind)
            s = schema(kind)
            if s is None:
                unknown.append(f"{path}:{logical} ({kind})")
                continue
            for op in OPERATIONS:
                for action in s.get("handlers", {}).get(op, {}).get("permissions", []):
                    needed.setdefault(action, set()).add(f"{kind} {op}")
    return needed, types, unknown


def role_denials():
    deploy = Template(os.path.join(ROOT, "ecs/cfn/deploy-role.yaml"))
    for p in deploy["Resources"]["CloudFormationRole"]["Properties"]["Policies"]:
        for st in statements(deploy.resolve(p["PolicyDocument"])):
            if st.get("Effect") == "Deny":
                yield from as_list(st["Action"])


def role_statements():
    """The Allow statements of the CloudFormation role: its inline policies and the managed
    policies attached to it."""
    deploy = Template(os.path.join(ROOT, "ecs/cfn/deploy-role.yaml"))
    documents = [p["PolicyDocument"] for p in deploy["Resources"]["CloudFormationRole"]["Properties"]["Policies"]]
    for resource in deploy["Resources"].values():
        if resource["Type"] == "AWS::IAM::ManagedPolicy" and {"Ref": "CloudFormationRole"} in resource["Properties"].get("Roles", []):
            documents.append(resource["Properties"]["PolicyDocument"])
    for document in documents:
        for st in statements(deploy.resolve(document)):
            if st.get("Effect") == "Allow":
                yield st


def allowed(action, sts):
    return any(fnmatch.fnmatch(action.lower(), a.lower()) for st in sts for a in as_list(st["Action"]))


def main():
    needed, types, unknown = needed_actions()
    actions = iam_actions()
    ungrantable = sorted(a for a in needed if not grantable(a, actions))
    for a in ungrantable:
        del needed[a]
    sts = list(role_statements())
    failures = [f"no resource schema for {u}" for u in unknown]
    failures += [
        f"wildcard action {a} in {st.get('Sid')} (only Describe*, Get*, List* patterns)"
        for st in sts
        for a in as_list(st["Action"])
        if "*" in a and not re.fullmatch(READ_PATTERN, a)
    ]
    denied = set(role_denials())
    for action, why in DENIED.items():
        if action not in denied:
            failures.append(f"{action} must be denied explicitly ({why})")
        needed.pop(action, None)
    missing = sorted(a for a in needed if not allowed(a, sts))
    for action in missing:
        failures.append(f"missing {action} (needed by {', '.join(sorted(needed[action]))})")
    linked = {}
    for st in sts:
        if "iam:CreateServiceLinkedRole" in as_list(st["Action"]):
            names = st.get("Condition", {}).get("StringEquals", {}).get("iam:AWSServiceName", [])
            for name in as_list(names):
                linked[name] = st.get("Sid")
    for kind, service in sorted(SERVICE_LINKED.items()):
        if kind in types and service not in linked:
            failures.append(f"{kind} needs the {service} service-linked role: allow iam:CreateServiceLinkedRole for it")
    for f in failures:
        print(f"FAIL {f}")
    print(f"{'FAIL' if failures else 'ok  '} permissions: {len(needed)} actions needed by {len(types)} resource types "
          f"in {len(STACKS)} stacks, {len(missing)} missing ({len(ungrantable)} schema names are no IAM action: "
          f"{', '.join(ungrantable)})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
