"""Statement jobs on Celery workers when one answers, else on the in-process pool: the JobQueue
of host.api.job_port sends the statement kind and its args as a task, tracked by the task's id.
Other kinds (the lab's scenario jobs) always run in-process.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from config.settings import Settings
from device.sim.api.jobs import KEPT_JOBS, InProcessJobs
from device.sim.worker.celery_app import make_celery
from device.sim.worker.tasks import PING_TASK, STATEMENT_TASK
from device.sim.worker.transport import task_transport
from host.api.job_port import JobInfo, Work

log = logging.getLogger(__name__)

STATEMENT_KIND = "statement"  # host.api.bank_routes.STATEMENT_JOB
STATEMENT_FILE = "statement.pdf"  # host.api.bank_routes.STATEMENT_FILE
PING_SECONDS = 3.0  # the database transport polls each second: a ping task answers in ~1-2 s
PING_KEPT_SECONDS = 30.0  # how long a ping's answer decides where statements go
STATES = {
    "PENDING": "queued",
    "RECEIVED": "queued",
    "STARTED": "running",
    "RETRY": "running",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "failed",
}


def describe(settings: Settings) -> str:
    """Where statement jobs go with these settings, in one line for the start-up log."""
    if settings.redis_url and settings.task_broker != "database":
        broker = "Redis (REDIS_URL)"
    else:
        broker = "the bank's PostgreSQL server"
    return (
        f"a Celery worker through {broker} when one answers a ping (asked at most every "
        f"{PING_KEPT_SECONDS:.0f} s), else this process's thread pool"
    )


def worker_answers(app: Celery, *, can_broadcast: bool) -> bool:
    """Whether a worker answers within PING_SECONDS: Celery's broadcast ping where the transport
    carries it (Redis), else a ping task (the database), which a busy worker may leave
    unanswered."""
    try:
        if can_broadcast:
            return bool(app.control.ping(timeout=PING_SECONDS))
        answer = app.send_task(PING_TASK, expires=PING_SECONDS)
        try:
            return bool(answer.get(timeout=PING_SECONDS, interval=0.2))
        finally:
            answer.forget()
    except Exception as err:  # no broker, no worker, a timeout: in-process it is
        log.debug("no worker answered a ping: %r", err)
        return False


class CeleryJobs:
    """Statement jobs as Celery tasks while a worker answers a ping (the answer kept for
    PING_KEPT_SECONDS), else and for every other kind on `local`. The Celery app (and its
    transport's database) is made at the first statement, so start-up never waits on a broker."""

    def __init__(self, settings: Settings, local: InProcessJobs, kept: int = KEPT_JOBS) -> None:
        self._settings = settings
        self._app: Celery | None = None
        self._can_broadcast = False
        self._local = local
        self._kept = kept
        self._sent: OrderedDict[str, JobInfo] = OrderedDict()  # by task id, as submitted
        self._lock = threading.Lock()
        self._pinged_at = -PING_KEPT_SECONDS
        self._worker = False

    def submit(self, kind: str, work: Work, args: Mapping[str, Any] | None = None) -> JobInfo:
        if kind != STATEMENT_KIND or args is None or not self._worker_answers():
            return self._local.submit(kind, work, args)
        app = self._celery()
        task_id = uuid.uuid4().hex
        job = JobInfo(id=task_id, kind=kind, status="queued", submitted_at=dt.datetime.now(dt.UTC))
        try:
            app.send_task(
                STATEMENT_TASK, args=[args["account"], args["from"], args["to"]], task_id=task_id
            )
        except Exception as err:  # the broker went away since the ping: in-process it is
            log.warning("job (%s) stays in-process: cannot send it (%s)", kind, err)
            return self._local.submit(kind, work, args)
        with self._lock:
            self._sent[task_id] = job
            while len(self._sent) > self._kept:
                self._sent.popitem(last=False)
        log.info("job %s (%s) sent to a Celery worker", task_id, kind)
        return job

    def get(self, job_id: str) -> JobInfo | None:
        with self._lock:
            sent = self._sent.get(job_id)
        if sent is None:
            return self._local.get(job_id)
        task: AsyncResult[Any] = AsyncResult(job_id, app=self._celery())
        status = STATES.get(task.state, "running")
        if status == "succeeded":
            payload: Any = task.result
            result = dict(payload)
            has_file = self._local_file(result) is not None
            return JobInfo(
                id=sent.id,
                kind=sent.kind,
                status=status,
                submitted_at=sent.submitted_at,
                finished_at=task.date_done,
                result=result,
                files=(STATEMENT_FILE,) if has_file else (),
            )
        if status == "failed":
            err = task.result
            return JobInfo(
                id=sent.id,
                kind=sent.kind,
                status=status,
                submitted_at=sent.submitted_at,
                finished_at=task.date_done,
                error=f"{type(err).__name__}: {err}",
            )
        return JobInfo(id=sent.id, kind=sent.kind, status=status, submitted_at=sent.submitted_at)

    def file(self, job_id: str, name: str) -> Path | None:
        with self._lock:
            sent = job_id in self._sent
        if not sent:
            return self._local.file(job_id, name)
        task: AsyncResult[Any] = AsyncResult(job_id, app=self._celery())
        if name != STATEMENT_FILE or task.state != "SUCCESS":
            return None
        payload: Any = task.result
        return self._local_file(dict(payload))

    def counts(self) -> dict[str, int]:
        return self._local.counts()

    def shutdown(self, *, wait: bool = False) -> None:
        self._local.shutdown(wait=wait)

    def _worker_answers(self) -> bool:
        with self._lock:
            if time.monotonic() - self._pinged_at < PING_KEPT_SECONDS:
                return self._worker
        try:
            app = self._celery()
        except Exception as err:  # the broker's database unreachable: in-process it is
            log.warning("statement jobs stay in-process: no Celery transport (%s)", err)
            answers = False
        else:  # outside the lock: at most PING_SECONDS
            answers = worker_answers(app, can_broadcast=self._can_broadcast)
        with self._lock:
            self._worker, self._pinged_at = answers, time.monotonic()
        return answers

    def _celery(self) -> Celery:
        with self._lock:
            if self._app is None:
                transport = task_transport(self._settings)
                self._app = make_celery(self._settings, transport)
                self._can_broadcast = transport.can_broadcast
            return self._app

    @staticmethod
    def _local_file(result: Mapping[str, Any]) -> Path | None:
        """The PDF a worker left on a volume this process shares; None when it went to S3."""
        if result.get("location") != "file":
            return None
        path = Path(str(result.get("path", "")))
        return path if path.is_file() else None
