"""Fetching a model from S3 with boto3, resuming with a ranged GetObject."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from agent.model_sources.transfer import READ_CHUNK_BYTES, Transfer
from paddler.model_source import SHA256_PATTERN, ModelSourceError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

NOT_FOUND = ("404", "NoSuchKey", "NotFound")
DENIED = ("403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch")
CHANGED = ("412", "PreconditionFailed")
RETRYABLE = ("SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable")


def s3_client(endpoint_url: str | None, region: str | None) -> S3Client:
    """A client from the standard AWS configuration (``AWS_ENDPOINT_URL``, ``AWS_REGION``,
    credentials…) unless an endpoint or region is given."""
    return boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None)


def fetch_s3(transfer: Transfer, bucket: str, key: str, client: S3Client) -> None:
    """One attempt: get the rest of ``s3://bucket/key`` into ``transfer``. The object's
    ``sha256`` metadata, when it has one, is checked like a given digest."""
    what = f"s3://{bucket}/{key}"
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        total, etag = head["ContentLength"], head.get("ETag")
        offset = transfer.resume_from
        if offset > total or transfer.stored_validator not in (None, etag):
            offset = 0  # the object changed since those bytes came
        remote_sha256 = head.get("Metadata", {}).get("sha256", "").lower()
        transfer.start(
            offset=offset,
            total=total,
            validator=etag,
            remote_sha256=remote_sha256 if SHA256_PATTERN.fullmatch(remote_sha256) else None,
        )
        if offset == total:
            return
        wanted = f"bytes={offset}-"
        if etag:  # the object must not change between the head and this read
            answer = client.get_object(Bucket=bucket, Key=key, Range=wanted, IfMatch=etag)
        else:
            answer = client.get_object(Bucket=bucket, Key=key, Range=wanted)
        body = answer["Body"]
        with contextlib.closing(body):
            for chunk in body.iter_chunks(READ_CHUNK_BYTES):
                transfer.write(chunk)
    except ClientError as error:
        if _code(error) in CHANGED:
            transfer.discard()
        raise _explained(error, what, bucket) from error
    except NoCredentialsError as error:
        raise ModelSourceError(
            f"no AWS credentials to read {what}: give the agent an instance profile or set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from error
    except BotoCoreError as error:
        raise ModelSourceError(
            f"network error while downloading {what}: {error}", transient=True
        ) from error


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _explained(error: ClientError, what: str, bucket: str) -> ModelSourceError:
    code = _code(error)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code == "NoSuchBucket":
        return ModelSourceError(f"cannot read {what}: the bucket {bucket} does not exist")
    if code in NOT_FOUND:
        return ModelSourceError(f"cannot read {what}: no such key (or no such bucket)")
    if code in DENIED:
        return ModelSourceError(
            f"access to {what} was denied ({code}): check the agent's AWS credentials and "
            "the bucket's policy"
        )
    if code in CHANGED:
        return ModelSourceError(f"{what} changed while it was downloading", transient=True)
    message = error.response.get("Error", {}).get("Message", "")
    return ModelSourceError(
        f"cannot read {what}: {code} {message}".rstrip(),
        transient=code in RETRYABLE or status >= 500,
    )
