"""Long operations as jobs on an in-process thread pool: submitted at once, polled by id, their
result and files kept until the oldest jobs make room for new ones.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from host.api.job_port import JobFailed, JobInfo, JobOutcome, Work

log = logging.getLogger(__name__)

WORKERS = 2
KEPT_JOBS = 200  # finished jobs remembered; the oldest finished ones are forgotten first


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class InProcessJobs:
    """The JobQueue of host.api.job_port on a thread pool of this process."""

    def __init__(self, workers: int = WORKERS, kept: int = KEPT_JOBS) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="api-job")
        self._kept = kept
        self._jobs: OrderedDict[str, JobInfo] = OrderedDict()
        self._files: dict[str, dict[str, Path]] = {}
        self._lock = threading.Lock()

    def submit(self, kind: str, work: Work, args: Mapping[str, Any] | None = None) -> JobInfo:
        job = JobInfo(id=uuid.uuid4().hex, kind=kind, status="queued", submitted_at=_utc_now())
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        self._pool.submit(self._run, job.id, work)
        log.info("job %s (%s) queued", job.id, kind)
        return job

    def get(self, job_id: str) -> JobInfo | None:
        with self._lock:
            return self._jobs.get(job_id)

    def file(self, job_id: str, name: str) -> Path | None:
        with self._lock:
            return self._files.get(job_id, {}).get(name)

    def counts(self) -> dict[str, int]:
        """Jobs remembered, by status."""
        with self._lock:
            counts: dict[str, int] = {}
            for job in self._jobs.values():
                counts[job.status] = counts.get(job.status, 0) + 1
            return counts

    def shutdown(self, *, wait: bool = False) -> None:
        """Stop taking jobs and drop the queued ones; running ones finish (waited for if
        `wait`)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def _update(self, job_id: str, **changes: object) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._jobs[job_id] = replace(job, **changes)  # type: ignore[arg-type]

    def _run(self, job_id: str, work: Work) -> None:
        self._update(job_id, status="running", started_at=_utc_now())
        try:
            outcome: JobOutcome = work()
        except JobFailed as err:
            self._update(job_id, status="failed", finished_at=_utc_now(), error=str(err))
            log.info("job %s failed: %s", job_id, err)
            return
        except Exception as err:  # a job's failure is its result, never the pool's end
            log.exception("job %s failed", job_id)
            self._update(
                job_id,
                status="failed",
                finished_at=_utc_now(),
                error=f"{type(err).__name__}: {err}",
            )
            return
        with self._lock:
            self._files[job_id] = dict(outcome.files)
        self._update(
            job_id,
            status="succeeded",
            finished_at=_utc_now(),
            result=dict(outcome.result),
            files=tuple(outcome.files),
        )
        log.info("job %s succeeded", job_id)

    def _forget_old(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.status in ("succeeded", "failed")]
        while len(self._jobs) > self._kept and finished:
            oldest = finished.pop(0)
            self._jobs.pop(oldest, None)
            self._files.pop(oldest, None)
