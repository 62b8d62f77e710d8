"""Where a finished statement PDF goes: it stays in STATEMENT_OUTPUT_DIR, or is put in the S3
bucket named by STATEMENT_BUCKET (through boto3, with the usual AWS credentials) and removed here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config.settings import Settings

KEY_PREFIX = "statements/"


class StatementStoreError(RuntimeError):
    """The PDF was made but could not be put where the settings say (bucket, credentials)."""


def store_statement(settings: Settings, path: Path) -> dict[str, Any]:
    """Keep or upload the PDF at `path`; where it is now, as JSON-able fields."""
    size = path.stat().st_size
    bucket = settings.statement_bucket
    if not bucket:
        return {"location": "file", "path": str(path), "bytes": size}
    import boto3
    import boto3.exceptions
    import botocore.exceptions

    key = KEY_PREFIX + path.name
    try:
        client = boto3.client("s3")
        # The bucket encrypts at rest by its own default; the content type lets a browser open it.
        client.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": "application/pdf"})
    # upload_file wraps the service's refusal (no bucket, no right) in S3UploadFailedError.
    except (
        boto3.exceptions.Boto3Error,
        botocore.exceptions.BotoCoreError,
        botocore.exceptions.ClientError,
    ) as err:
        raise StatementStoreError(
            f"cannot put {path.name} in s3://{bucket}/{key}: {err}; the PDF stays at {path}"
        ) from err
    path.unlink()
    return {
        "location": "s3",
        "bucket": bucket,
        "key": key,
        "uri": f"s3://{bucket}/{key}",
        "bytes": size,
    }
