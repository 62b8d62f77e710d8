"""`atm-sim worker`: a Celery worker of the product's tasks, saying at start which transport it
uses (Redis, or the bank's PostgreSQL when REDIS_URL is unset).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from config.settings import Settings
from device.sim.worker.celery_app import make_celery
from device.sim.worker.transport import task_transport


def run_worker(
    settings: Settings,
    *,
    concurrency: int = 1,
    name: str | None = None,
    out: Callable[[str], None] = print,
) -> int:
    transport = task_transport(settings)
    out(f"atm-sim worker: tasks through {transport.description}")
    app = make_celery(settings, transport)
    node = name or f"atm-sim-{os.getpid()}@{socket.gethostname()}"  # two on one host differ
    # The database transport has no broadcast: workers cannot gossip, mingle or answer a ping.
    quiet = not transport.can_broadcast
    worker = app.Worker(
        concurrency=concurrency,
        hostname=node,
        loglevel=settings.log_level,
        without_gossip=quiet,
        without_mingle=quiet,
        without_heartbeat=quiet,
    )
    worker.start()
    # Celery logs an unrecoverable error and stops; the exit status says it too.
    return int(worker.exitcode or 0)
