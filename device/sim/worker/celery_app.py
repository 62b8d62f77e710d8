"""The product's Celery application, built from its settings (never at import time), with the
tasks registered under stable names that any machine's worker and client agree on.
"""

from __future__ import annotations

from celery import Celery

from config.settings import Settings
from device.sim.worker.tasks import register_tasks
from device.sim.worker.transport import TaskTransport, task_transport

RESULT_SECONDS = 24 * 3600  # how long a finished task's result waits to be collected


def make_celery(settings: Settings, transport: TaskTransport | None = None) -> Celery:
    transport = transport or task_transport(settings)
    app = Celery("atm_sim", broker=transport.broker_url, backend=transport.result_backend)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=RESULT_SECONDS,
        result_extended=True,
        task_track_started=True,
        # One task at a time per worker process: a fleet shard holds its CPU for minutes.
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options=dict(transport.transport_options),
        # The product's own logging (one JSON object a line on stderr) stays in charge: Celery
        # neither replaces the root logger's handler nor turns stdout/stderr into log records
        # (which that handler, writing to the current stderr, would feed back to itself).
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        timezone="UTC",
    )
    register_tasks(app)
    return app
