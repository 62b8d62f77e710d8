"""The product's Celery application, built from its settings (never at import time), with the
tasks registered under stable names that any machine's worker and client agree on.
"""

from __future__ import annotations

import sqlalchemy as sa
from celery import Celery
from celery.backends.database import DatabaseBackend
from kombu import Queue

from config.settings import Settings
from device.sim.worker.tasks import register_tasks
from device.sim.worker.transport import TaskTransport, task_transport

RESULT_SECONDS = 24 * 3600  # how long a finished task's result waits to be collected
# pg_advisory_lock key under which the task tables of the database transport are first made
TABLES_LOCK = 0x41544D54


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
    _prepare_database_tables(app, transport)
    return app


def _prepare_database_tables(app: Celery, transport: TaskTransport) -> None:
    """Make the database transport's tables and its queue's row, under an advisory lock.

    kombu and Celery make them on first use, each checking then creating with no lock between
    processes: two workers starting together on a new database collided on kombu_queue's unique
    name and one of them died. After this, first use finds them made.
    """
    if not transport.broker_url.startswith("sqla+"):
        return
    engine = sa.create_engine(transport.broker_url.removeprefix("sqla+"))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": TABLES_LOCK})
            try:
                with app.connection_for_write() as connection:
                    Queue(app.conf.task_default_queue, channel=connection.default_channel).declare()
                backend = app.backend
                assert isinstance(backend, DatabaseBackend)
                backend.ResultSession().close()
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": TABLES_LOCK})
    finally:
        engine.dispose()
