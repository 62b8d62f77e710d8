"""Where a statement PDF ends up: kept in STATEMENT_OUTPUT_DIR, or put in the S3 bucket (moto's
S3 server over real HTTP) and removed here; a bucket that cannot take it says so in one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from config.settings import Settings
from device.sim.worker.statement_store import StatementStoreError, store_statement
from tests.integration.worker_processes import moto_s3


def pdf(tmp_path: Path) -> Path:
    path = tmp_path / "statement-10000001-2026-11-01-2026-11-30.pdf"
    path.write_bytes(b"%PDF-1.4 test statement\n%%EOF\n")
    return path


def test_without_a_bucket_the_pdf_stays_where_it_was_written(
    settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    path = pdf(tmp_path)
    stored = store_statement(settings_for(), path)
    assert stored == {"location": "file", "path": str(path), "bytes": path.stat().st_size}


def test_bucket_gets_the_pdf_and_a_missing_bucket_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    with moto_s3(monkeypatch):
        s3 = boto3.client("s3")
        s3.create_bucket(
            Bucket="atm-statements", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        path = pdf(tmp_path)
        stored = store_statement(settings_for(STATEMENT_BUCKET="atm-statements"), path)
        key = "statements/statement-10000001-2026-11-01-2026-11-30.pdf"
        assert stored["uri"] == f"s3://atm-statements/{key}"
        head = s3.head_object(Bucket="atm-statements", Key=key)
        assert head["ContentType"] == "application/pdf" and head["ContentLength"] == stored["bytes"]
        assert not path.exists()

        kept = pdf(tmp_path)
        with pytest.raises(StatementStoreError) as caught:
            store_statement(settings_for(STATEMENT_BUCKET="no-such-bucket"), kept)
    message = str(caught.value)
    assert "s3://no-such-bucket/statements/" in message and "NoSuchBucket" in message
    assert "\n" not in message and kept.exists()  # the PDF is not lost
