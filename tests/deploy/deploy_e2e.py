#!/usr/bin/env python3
"""ecs/deploy.sh end to end against moto (run by `make deploy-check`, in the tools venv).

From an empty emulated account (a VPC and two subnets are the only inputs, as in a real
account), with the image build stubbed (an image URI; moto pulls nothing):
1. `deploy.sh ENV repository`: the repository stack, before any image exists, through a proxy
   that shows it as a failed first create (ROLLBACK_COMPLETE): deploy.sh names the failure,
   deletes the stack and creates it again;
2. `deploy.sh --image URI ENV`: the infra stack (change set shown), the config in SSM, the task
   definition, the service attached to the infra stack's target group, the scaling stack, the
   rollout check (COMPLETED);
3. the same again with a new image: stacks unchanged, the service updated to the new revision,
   which pins its image digest and config version (ssm:NAME:2); then `deploy.sh ENV rollback 1`:
   the service runs revision 1 again, with its digest and config version 1; then that digest is
   promoted to a second environment as it is (the workflow's promotion: no rebuild);
4. a third deploy through a proxy that answers DescribeServices as ECS does after the circuit
   breaker rolled a deployment back (rolloutState FAILED, the previous task definition running):
   deploy.sh exits 1 and says so;
5. `deploy.sh --dry-run` with the endpoint pointing at a closed port: passes, calls nothing.
Exit 0 when every step passes.
"""
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.dirname(sys.executable)
MOTO_PYTHON = os.path.join(ROOT, ".cache/moto/bin/python")
REGION = "eu-west-1"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kvs-infer@sha256:" + "a" * 64
IMAGE2 = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kvs-infer@sha256:" + "b" * 64
IMAGE3 = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kvs-infer@sha256:" + "c" * 64
FAILURES = []


def check(ok, what):
    print(f"{'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        FAILURES.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto():
    port = free_port()
    # Two running tasks per service: the desired count, so a deployment reaches COMPLETED.
    env = dict(os.environ, MOTO_ECS_SERVICE_RUNNING="2")
    proc = subprocess.Popen([MOTO_PYTHON, os.path.join(ROOT, "tests/deploy/moto_cfn_server.py"),
                             "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("moto did not start")


def forward(handler, body):
    """The request `handler` received, sent on to its upstream (moto): (data, status, headers)."""
    req = urllib.request.Request(handler.upstream + handler.path, data=body, method="POST",
                                 headers={k: v for k, v in handler.headers.items() if k.lower() != "host"})
    try:
        with urllib.request.urlopen(req, timeout=60) as reply:
            return reply.read(), reply.status, reply.headers
    except urllib.error.HTTPError as error:  # an AWS error reply: passed on as it is
        return error.read(), error.code, error.headers


def answer(handler, status, headers, data):
    handler.send_response(status)
    for k, v in headers.items():
        if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
            handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class RolledBack(http.server.BaseHTTPRequestHandler):
    """Forwards to moto; DescribeServices answers as after a circuit-breaker rollback."""
    upstream = ""
    previous = ""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        data, status, headers = forward(self, body)
        if self.headers.get("X-Amz-Target", "").endswith(".DescribeServices"):
            doc = json.loads(data)
            for service in doc.get("services", []):
                failed = [dict(d, status="ACTIVE", rolloutState="FAILED",
                               rolloutStateReason="ECS deployment circuit breaker: tasks failed to start.")
                          for d in service.get("deployments", [])]
                for d in failed:
                    d["taskDefinition"] = service["taskDefinition"]
                rollback = {"id": "ecs-svc/rollback", "status": "PRIMARY", "taskDefinition": self.previous,
                            "rolloutState": "COMPLETED", "rolloutStateReason": "rolled back"}
                service["deployments"] = [rollback] + failed
                service["taskDefinition"] = self.previous
            data = json.dumps(doc).encode()
        answer(self, status, headers, data)

    def log_message(self, *args):
        pass


class FailedCreate(http.server.BaseHTTPRequestHandler):
    """Forwards to moto, except that the repository stack looks as a failed first create leaves
    it (ROLLBACK_COMPLETE, one CREATE_FAILED event) until deploy.sh deletes it (moto itself never
    reaches that state)."""
    upstream = ""
    stack = "kvs-infer-repository"
    deleted = False
    calls = []
    NS = "http://cloudformation.amazonaws.com/doc/2010-05-15/"

    def reply(self, status, data, kind="text/xml"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        form = urllib.parse.parse_qs(body.decode(errors="replace"))
        action, stack = form.get("Action", [""])[0], form.get("StackName", [""])[0]
        FailedCreate.calls.append((action, stack))
        if stack == self.stack and not FailedCreate.deleted:
            stack_id = f"arn:aws:cloudformation:{REGION}:123456789012:stack/{self.stack}/1"
            if action == "DescribeStacks":
                xml = (f'<DescribeStacksResponse xmlns="{self.NS}"><DescribeStacksResult><Stacks><member>'
                       f"<StackName>{self.stack}</StackName><StackId>{stack_id}</StackId>"
                       "<StackStatus>ROLLBACK_COMPLETE</StackStatus><CreationTime>2026-01-01T00:00:00Z</CreationTime>"
                       "</member></Stacks></DescribeStacksResult><ResponseMetadata><RequestId>1</RequestId>"
                       "</ResponseMetadata></DescribeStacksResponse>")
                return self.reply(200, xml.encode())
            if action == "DescribeStackEvents":
                xml = (f'<DescribeStackEventsResponse xmlns="{self.NS}"><DescribeStackEventsResult><StackEvents><member>'
                       f"<StackId>{stack_id}</StackId><EventId>1</EventId><StackName>{self.stack}</StackName>"
                       "<LogicalResourceId>Repository</LogicalResourceId><ResourceType>AWS::ECR::Repository</ResourceType>"
                       "<Timestamp>2026-01-01T00:00:00Z</Timestamp><ResourceStatus>CREATE_FAILED</ResourceStatus>"
                       "<ResourceStatusReason>simulated: the first create failed</ResourceStatusReason></member>"
                       "</StackEvents></DescribeStackEventsResult><ResponseMetadata><RequestId>2</RequestId>"
                       "</ResponseMetadata></DescribeStackEventsResponse>")
                return self.reply(200, xml.encode())
            if action == "DeleteStack":
                FailedCreate.deleted = True
                xml = f'<DeleteStackResponse xmlns="{self.NS}"><ResponseMetadata><RequestId>3</RequestId></ResponseMetadata></DeleteStackResponse>'
                return self.reply(200, xml.encode())
        data, status, headers = forward(self, body)
        answer(self, status, headers, data)

    def log_message(self, *args):
        pass


def deploy(endpoint, env_file, *args):
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION, AWS_EC2_METADATA_DISABLED="true",
               PATH=f"{TOOLS}:{os.environ['PATH']}", PYTHON=sys.executable, POLL_SECONDS="1", ROLLOUT_TIMEOUT="120")
    result = subprocess.run(["bash", os.path.join(ROOT, "ecs/deploy.sh"), *args, env_file],
                            env=env, capture_output=True, text=True, timeout=900)
    return result.returncode, result.stdout + result.stderr


def client(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="test", aws_secret_access_key="test")


def env_file_for(folder, endpoint, environment="e2e"):
    ec2 = client("ec2", endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
               for i, az in ((1, "a"), (2, "b"))]
    with open(os.path.join(ROOT, "ecs/env/example.env")) as f:
        text = f.read()
    for key, value in {"VPC_ID": vpc, "PRIVATE_SUBNET_IDS": ",".join(subnets), "ALB_SUBNET_IDS": ",".join(subnets),
                       "ENVIRONMENT": environment, "ALARM_EMAIL": "ops@example.com"}.items():
        text = re.sub(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
    path = os.path.join(folder, f"{environment}.env")
    with open(path, "w") as f:
        f.write(text)
    return path, subnets


def first_deploy(endpoint, env_file, subnets):
    # The repository stack's first create failed earlier: shown, deleted, created again.
    FailedCreate.upstream = endpoint
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FailedCreate)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    code, out = deploy(f"http://127.0.0.1:{proxy.server_address[1]}", env_file, "repository")
    proxy.shutdown()
    check(code == 0, f"deploy.sh repository: exit {code}\n{out}")
    check("failed to create earlier (ROLLBACK_COMPLETE)" in out and "simulated: the first create failed" in out,
          "a failed first create is named with its reason")
    check(("DeleteStack", "kvs-infer-repository") in FailedCreate.calls and "creating it again" in out,
          "… deleted, and the stack created again")
    repo = client("ecr", endpoint).describe_repositories()["repositories"]
    check([r["repositoryName"] for r in repo] == ["kvs-infer"], "the repository exists before any image")

    code, out = deploy(endpoint, env_file, "--image", IMAGE)
    print(out)
    check(code == 0, f"deploy.sh --image: exit {code}")
    check("change set" in out and "AWS::ECS::Cluster" in out, "the infra change set was shown before it ran")
    check("rollout COMPLETED" in out, "the rollout check saw COMPLETED")
    cfn = client("cloudformation", endpoint)
    stacks = {s["StackName"]: s["StackStatus"] for s in cfn.describe_stacks()["Stacks"]}
    check(stacks == {"kvs-infer-repository": "CREATE_COMPLETE", "kvs-infer-e2e-infra": "CREATE_COMPLETE",
                     "kvs-infer-e2e-scaling": "CREATE_COMPLETE"}, f"three stacks: {stacks}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName="kvs-infer-e2e-infra")["Stacks"][0]["Outputs"]}
    ecs = client("ecs", endpoint)
    # (moto keeps neither the cluster's settings nor a table's TTL from CloudFormation: the
    # templates' own checks in check_deploy.py cover Container Insights and expires_at.)
    check(len(ecs.describe_clusters(clusters=["kvs-infer-e2e"])["clusters"]) == 1, "the cluster exists")
    service = ecs.describe_services(cluster="kvs-infer-e2e", services=["kvs-infer-e2e"])["services"][0]
    check(service["loadBalancers"][0]["targetGroupArn"] == outputs["TargetGroupArn"],
          "the service is attached to the infra stack's target group")
    check(service["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == subnets, "tasks run in the private subnets")
    task = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    container = task["containerDefinitions"][0]
    check(container["image"] == IMAGE, "the task definition runs the given image")
    environment = {e["name"]: e["value"] for e in container["environment"]}
    check(environment["CONFIG_FILE"] == "ssm:/kvs-infer/e2e/config:1", "the task reads its config's version 1 from SSM")
    check(re.fullmatch(r"[0-9a-f]{64}", environment.get("CONFIG_SHA256", "")) is not None, "… and names its digest")
    check(task["taskRoleArn"] == outputs["TaskRoleArn"] and task["executionRoleArn"] == outputs["ExecutionRoleArn"],
          "the task uses the infra stack's roles")
    check(task["volumes"][0].get("dockerVolumeConfiguration", {}).get("scope") == "shared", "the outbox volume is a shared Docker volume")
    config = client("ssm", endpoint).get_parameter(Name="/kvs-infer/e2e/config")["Parameter"]["Value"]
    check(f"stream_name: {outputs['EventsStreamName']}" in config and outputs["LeaseTableName"] in config,
          "the config in SSM names the stack's stream and lease table")
    tables = client("dynamodb", endpoint).list_tables()["TableNames"]
    check(sorted(tables) == sorted(f"kvs-infer-e2e-{t}" for t in ("camera-state", "events", "checkpoints", "leases")),
          f"the four tables exist: {tables}")
    check(client("kinesis", endpoint).describe_stream_summary(StreamName=outputs["EventsStreamName"]) is not None,
          "the events stream exists")
    check(client("s3", endpoint).head_bucket(Bucket=outputs["SnapshotBucketName"]) is not None, "the snapshot bucket exists")
    asg = client("autoscaling", endpoint).describe_auto_scaling_groups(AutoScalingGroupNames=["kvs-infer-e2e-gpu"])["AutoScalingGroups"]
    check(len(asg) == 1, "the GPU Auto Scaling group exists")
    lt = client("ec2", endpoint).describe_launch_template_versions(LaunchTemplateName="kvs-infer-e2e-gpu")["LaunchTemplateVersions"][0]
    check(lt["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required", "the launch template requires IMDSv2")
    return service["taskDefinition"]


def main():
    moto, endpoint = start_moto()
    try:
        with tempfile.TemporaryDirectory() as folder:
            env_file, subnets = env_file_for(folder, endpoint)
            first = first_deploy(endpoint, env_file, subnets)

            code, out = deploy(endpoint, env_file, "--image", IMAGE2)
            check(code == 0 and out.count(": no changes") == 3, f"a second deploy changes no stack: exit {code}\n{out[-3000:]}")
            check("updated service" in out and "rollout COMPLETED" in out, "… and updates the service")
            cfn = client("cloudformation", endpoint)
            params = {p["ParameterKey"]: p["ParameterValue"]
                      for p in cfn.describe_stacks(StackName="kvs-infer-e2e-infra")["Stacks"][0]["Parameters"]}
            check(re.fullmatch(r"ami-[0-9a-f]+", params.get("GpuAmiId", "")) is not None,
                  f"the stack pins a GPU AMI id: {params.get('GpuAmiId')}")
            check(f"GPU AMI: {params.get('GpuAmiId')} (the stack runs {params.get('GpuAmiId')})" in out
                  and "instance refresh" not in out, "… which a redeploy keeps: no instance refresh")
            ecs = client("ecs", endpoint)
            second = ecs.describe_services(cluster="kvs-infer-e2e", services=["kvs-infer-e2e"])["services"][0]["taskDefinition"]
            check(second != first and second.endswith(":2"), f"the service runs the new revision {second}")
            def runs(revision):
                task = ecs.describe_task_definition(taskDefinition=revision)["taskDefinition"]["containerDefinitions"][0]
                return task["image"], {e["name"]: e["value"] for e in task["environment"]}["CONFIG_FILE"]
            check(runs(second) == (IMAGE2, "ssm:/kvs-infer/e2e/config:2"), f"revision 2 pins its image and config: {runs(second)}")

            # Rollback: the earlier digest with the config version it ran with, no rebuild.
            code, out = deploy(endpoint, env_file, "rollback", "1")
            check(code == 0 and "rollout COMPLETED" in out, f"deploy.sh rollback 1: exit {code}\n{out[-2000:]}")
            now = ecs.describe_services(cluster="kvs-infer-e2e", services=["kvs-infer-e2e"])["services"][0]["taskDefinition"]
            check(now == first and runs(now) == (IMAGE, "ssm:/kvs-infer/e2e/config:1"),
                  f"rolled back to revision 1, its digest and config version 1: {now} {runs(now)}")

            # Promotion: the digest staging ran goes to another environment as it is (no rebuild).
            prod_env, _ = env_file_for(folder, endpoint, "e2eprod")
            code, out = deploy(endpoint, prod_env, "--image", IMAGE2)
            check(code == 0 and "rollout COMPLETED" in out, f"promoting the digest to e2eprod: exit {code}\n{out[-2000:]}")
            promoted = ecs.describe_services(cluster="kvs-infer-e2eprod", services=["kvs-infer-e2eprod"])["services"][0]
            check(runs(promoted["taskDefinition"])[0] == IMAGE2, "e2eprod runs the digest staging ran")

            RolledBack.upstream, RolledBack.previous = endpoint, second
            proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RolledBack)
            threading.Thread(target=proxy.serve_forever, daemon=True).start()
            code, out = deploy(f"http://127.0.0.1:{proxy.server_address[1]}", env_file, "--image", IMAGE3)
            proxy.shutdown()
            print(out[-600:])
            check(code == 1, f"a rolled-back deployment exits 1 (got {code})")
            check("rollout FAILED" in out and "circuit breaker rolled" in out and second in out,
                  "… and says the circuit breaker rolled back to the previous revision")

            code, out = deploy("http://127.0.0.1:9", os.path.join(ROOT, "ecs/env/example.env"), "--dry-run")
            check(code == 0 and "dry run passed" in out, f"--dry-run passes without AWS: exit {code}\n{out}")
    finally:
        moto.kill()
    if FAILURES:
        print(f"\n{len(FAILURES)} deploy.sh check(s) failed")
        return 1
    print("\ndeploy.sh end to end against moto: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
