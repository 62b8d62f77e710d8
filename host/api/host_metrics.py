"""The bank's Prometheus metrics: answers by kind and response code and open holds with their
age (read from the database at each scrape), and the latency of the host run by this process.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from host.messages import HostRequest, HostResponse
from host.models import Hold, HostTransaction
from host.server import Authoriser

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class BankCollector(Collector):
    """Reads the host's records and open holds at each scrape; a database that does not answer
    shows as atm_bank_database_up 0 instead of failing the scrape."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("atm_bank_database_up", "1 if the bank database answered")
        try:
            answered, holds = self._read()
        except sa.exc.SQLAlchemyError as err:
            log.warning("metrics: the bank database did not answer: %s", err)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield answered
        yield from holds

    def _read(self) -> tuple[Metric, list[Metric]]:
        answered = CounterMetricFamily(
            "atm_host_answered",
            "Requests the host answered, by kind and response code (its records)",
            labels=["kind", "response_code"],
        )
        now = dt.datetime.now(dt.UTC)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(HostTransaction.kind, HostTransaction.response_code, sa.func.count())
                .group_by(HostTransaction.kind, HostTransaction.response_code)
                .order_by(HostTransaction.kind, HostTransaction.response_code)
            ).all()
            count, amount, oldest = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(Hold.amount), 0),
                    sa.func.min(Hold.created_at),
                ).where(Hold.status == "held")
            ).one()
        for kind, code, number in rows:
            answered.add_metric([kind, code or "none"], float(number))
        holds_open = GaugeMetricFamily("atm_open_holds", "Withdrawal holds still open")
        holds_open.add_metric([], float(count))
        holds_amount = GaugeMetricFamily("atm_open_holds_cents", "Cents held by open holds")
        holds_amount.add_metric([], float(amount))
        holds_age = GaugeMetricFamily(
            "atm_open_hold_oldest_age_seconds", "Age of the oldest open hold (0 if none)"
        )
        holds_age.add_metric([], max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
        return answered, [holds_open, holds_amount, holds_age]


class MeteredAuthoriser:
    """The bank's authoriser with its latency and answers counted, for the host this process
    runs (the database-backed counts cover hosts in other processes too)."""

    def __init__(self, inner: Authoriser, registry: CollectorRegistry) -> None:
        self.inner = inner
        self.latency = Histogram(
            "atm_host_request_seconds",
            "Time the bank took to answer one host request, by kind",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.answers = Counter(
            "atm_host_requests",
            "Host requests answered by this process, by kind and response code",
            ["kind", "response_code"],
            registry=registry,
        )

    def handle(self, request: HostRequest) -> HostResponse:
        started = time.perf_counter()
        response = self.inner.handle(request)
        self.latency.labels(request.kind.value).observe(time.perf_counter() - started)
        self.answers.labels(request.kind.value, response.response_code.value).inc()
        return response
