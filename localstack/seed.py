"""Seed a running LocalStack with what Paddler's EC2 provider and S3 model source expect.

- the agent launch template (``paddler-agent``, IMDSv2 required, encrypted root volume), as
  ``infra/launch_template.tf`` declares it;
- the model bucket (private, versioned), holding the bundled SmolLM2 GGUF with its sha256 in
  the object's metadata.

Idempotent, also when several seeders run at once against a fresh LocalStack (``seed.sh``
serialises them; this script tolerates losing a race anyway). Run it with the project's virtual
environment (``seed.sh`` does); it prints a JSON summary as its last line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from control_plane.providers.ec2 import DEFAULT_LAUNCH_TEMPLATE  # noqa: E402
from paddler.bundled import bundled_model_path  # noqa: E402

ENDPOINT = os.environ.get("LOCALSTACK_ENDPOINT", "http://127.0.0.1:4566")
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
BUCKET = "paddler-models"
INSTANCE_TYPE = "t3.micro"


def client(service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def find_launch_template(ec2: Any, name: str) -> dict[str, Any] | None:
    found: list[dict[str, Any]] = ec2.describe_launch_templates(
        Filters=[{"Name": "launch-template-name", "Values": [name]}]
    )["LaunchTemplates"]
    return found[0] if found else None


def seed_launch_template(ec2: Any, name: str) -> dict[str, str]:
    template = find_launch_template(ec2, name)
    if template is not None:
        print(f"launch template {name} exists ({template['LaunchTemplateId']})")
    else:
        image_id = ec2.describe_images()["Images"][0]["ImageId"]
        try:
            template = ec2.create_launch_template(
                LaunchTemplateName=name,
                LaunchTemplateData={
                    "ImageId": image_id,
                    "InstanceType": INSTANCE_TYPE,
                    "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
                    "BlockDeviceMappings": [
                        {
                            "DeviceName": "/dev/xvda",
                            "Ebs": {"VolumeSize": 30, "VolumeType": "gp3", "Encrypted": True},
                        }
                    ],
                },
            )["LaunchTemplate"]
            print(f"created launch template {name} ({template['LaunchTemplateId']}, {image_id})")
        except ClientError as error:
            # another seeder created it between our look and our create
            if error_code(error) != "InvalidLaunchTemplateName.AlreadyExistsException":
                raise
            template = find_launch_template(ec2, name)
            if template is None:
                raise
            print(f"launch template {name} was created meanwhile ({template['LaunchTemplateId']})")
    return {"launch_template": name, "launch_template_id": template["LaunchTemplateId"]}


def seed_bucket(s3: Any, bucket: str, model: Path) -> dict[str, str]:
    try:
        s3.head_bucket(Bucket=bucket)
        print(f"bucket {bucket} exists")
    except ClientError:
        try:
            s3.create_bucket(Bucket=bucket)
        except ClientError as error:  # another seeder created it meanwhile: configure it too
            if error_code(error) != "BucketAlreadyOwnedByYou":
                raise
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        print(f"created bucket {bucket}")
    key = f"models/{model.name}"
    digest = sha256_of(model)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        current = head.get("Metadata", {}).get("sha256")
    except ClientError:
        current = None
    if current == digest:
        print(f"s3://{bucket}/{key} is up to date")
    else:
        s3.upload_file(str(model), bucket, key, ExtraArgs={"Metadata": {"sha256": digest}})
        print(f"uploaded {model} to s3://{bucket}/{key}")
    return {
        "bucket": bucket,
        "model_key": key,
        "model_sha256": digest,
        "model_url": f"s3://{bucket}/{key}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launch-template", default=DEFAULT_LAUNCH_TEMPLATE)
    parser.add_argument("--bucket", default=BUCKET)
    parser.add_argument("--model", type=Path, help="GGUF file to upload (default: bundled SmolLM2)")
    args = parser.parse_args()
    summary = {"endpoint": ENDPOINT, "region": REGION}
    summary |= seed_launch_template(client("ec2"), args.launch_template)
    summary |= seed_bucket(client("s3"), args.bucket, args.model or bundled_model_path())
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
