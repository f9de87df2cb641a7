"""Storage outside the sweep's process: S3 locations (AWS, MinIO or any S3-compatible server)
checked before any work starts, and URIs with their secrets hidden for printing and logging."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


class StorageError(RuntimeError):
    """Storage that cannot be used; the message names the endpoint and bucket, never a key."""


def redact(uri: str) -> str:
    """A URI with any password hidden: postgresql://u:secret@h/db -> postgresql://u:***@h/db."""
    return re.sub(r"(://[^:/@\s]+):[^@/\s]+@", r"\1:***@", uri)


def redact_tree(value):
    """`redact` applied to every string of nested dicts and lists (a config for printing)."""
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_tree(v) for v in value]
    return redact(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str = ""
    endpoint: str | None = None  # an S3-compatible server; None: AWS (or $AWS_ENDPOINT_URL)

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        """s3://BUCKET[/PREFIX][?endpoint_override=HOST:PORT&scheme=http] (pyarrow's query)."""
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StorageError(f"storage location {redact(uri)!r}: expected s3://BUCKET[/PREFIX]")
        if not BUCKET_NAME.fullmatch(parsed.netloc):
            raise StorageError(
                f"bucket {parsed.netloc!r}: S3 bucket names are 3-63 lowercase letters, digits, "
                "'-' and '.'"
            )
        query = parse_qs(parsed.query)
        endpoint = None
        if "endpoint_override" in query:
            scheme = query.get("scheme", ["https"])[0]
            endpoint = f"{scheme}://{query['endpoint_override'][0]}"
        return cls(parsed.netloc, parsed.path.strip("/"), endpoint)

    def uri(self, *parts: str) -> str:
        """s3://BUCKET/PREFIX/parts..., with pyarrow's endpoint_override for a non-AWS server."""
        path = "/".join(p for p in (self.prefix, *parts) if p)
        uri = f"s3://{self.bucket}/{path}" if path else f"s3://{self.bucket}"
        if self.endpoint is None:
            return uri
        endpoint = urlparse(self.endpoint)
        return f"{uri}?endpoint_override={endpoint.netloc}&scheme={endpoint.scheme or 'https'}"

    @property
    def where(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint or 'AWS S3'}"


def s3_client(endpoint: str | None):
    import boto3
    from botocore.config import Config

    # Fail within seconds rather than botocore's default retries over minutes.
    config = Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 2})
    return boto3.client("s3", endpoint_url=endpoint or None, config=config)


def check_bucket(location: S3Location, create: bool = False) -> None:
    """Raise StorageError (naming endpoint and bucket, no credentials) unless the bucket can be
    reached with the credentials at hand; with `create`, make a missing bucket."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    client = s3_client(location.endpoint)
    try:
        client.head_bucket(Bucket=location.bucket)
        return
    except NoCredentialsError:
        raise StorageError(
            f"{location.where}: no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "or AWS_PROFILE, or use an instance profile)"
        ) from None
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket") and create:
            client.create_bucket(Bucket=location.bucket)
            return
        missing = "does not exist (create it first)"
        reasons = {
            "404": missing,
            "NoSuchBucket": missing,
            "403": "access denied: wrong credentials or no permission on this bucket",
            "400": "rejected the request: check the endpoint and the region",
        }
        raise StorageError(f"{location.where}: {reasons.get(code, f'error {code}')}") from None
    except BotoCoreError as err:
        raise StorageError(f"{location.where}: cannot connect ({type(err).__name__})") from None


def check_storage(uri: str) -> None:
    """Check an s3:// storage location before a sweep writes to it; other locations pass."""
    if uri.startswith("s3://"):
        check_bucket(S3Location.parse(uri))
