#!/usr/bin/env python3
"""Turns on IAM enforcement in a running moto_server, for tests of denied reads.

Usage: enforce_iam.py ENDPOINT_URL POLICY_JSON
Creates IAM user `restricted` with POLICY_JSON as its only (inline) policy and an access key,
then asks moto to authorise every later request (POST /moto-api/reset-auth 0). Prints the key as
JSON {"AccessKeyId": ..., "SecretAccessKey": ...}. Run it after the test's own setup: from then
on every request to this moto must be signed by a known user and allowed by its policy.
"""
import json
import sys
import urllib.request

import boto3


def main() -> None:
    url, policy = sys.argv[1], sys.argv[2]
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    iam.create_user(UserName="restricted")
    iam.put_user_policy(UserName="restricted", PolicyName="only", PolicyDocument=policy)
    key = iam.create_access_key(UserName="restricted")["AccessKey"]
    # text/plain: a form content type would leave moto's request.data empty.
    req = urllib.request.Request(f"{url}/moto-api/reset-auth", data=b"0", method="POST",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=30) as reply:
        reply.read()
    print(json.dumps({"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}))


if __name__ == "__main__":
    main()
