"""The service's own Prometheus metrics: HTTP latency by route, lab ATMs by state, the faults
armed on them, their queued advices, and jobs by status.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from device.controller.atm_controller import STATES
from device.sim.api.lab import Lab
from device.sim.simulated_atm import AtmRunError

HTTP_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class HttpMetrics:
    """ASGI middleware timing every request, labelled by the route's path template (never the
    concrete path, which would make a label per account or job)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.latency = Histogram(
            "atm_api_request_seconds",
            "HTTP request latency by method, route template and status",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.latency.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )


class LabCollector(Collector):
    """The lab ATMs and jobs as they stand at each scrape."""

    def __init__(self, lab: Lab, job_counts: Callable[[], dict[str, int]]) -> None:
        self.lab = lab
        self.job_counts = job_counts

    def collect(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily(
            "atm_lab_atms", "Lab ATMs by controller state", labels=["state"]
        )
        faults = GaugeMetricFamily(
            "atm_lab_faults_active",
            "Faults armed on lab ATMs, by terminal and target",
            labels=["terminal_id", "target"],
        )
        advices = GaugeMetricFamily(
            "atm_lab_advices_queued",
            "Completion and reversal advices waiting for the host, by terminal",
            labels=["terminal_id"],
        )
        counts = dict.fromkeys(STATES, 0)
        for atm in self.lab.atms():
            try:
                controller = atm.sim.controller
            except AtmRunError:  # a lab ATM not started yet has no state to count
                continue
            counts[controller.state] = counts.get(controller.state, 0) + 1
            per_target: dict[str, int] = {}
            for fault in atm.faults():
                per_target[fault.target] = per_target.get(fault.target, 0) + 1
            for target, number in sorted(per_target.items()):
                faults.add_metric([atm.terminal_id, target], number)
            advices.add_metric([atm.terminal_id], len(controller.advices.pending()))
        for state, number in counts.items():
            by_state.add_metric([state], number)
        jobs = GaugeMetricFamily("atm_api_jobs", "Jobs remembered, by status", labels=["status"])
        for status, number in sorted(self.job_counts().items()):
            jobs.add_metric([status], number)
        yield from (by_state, faults, advices, jobs)
