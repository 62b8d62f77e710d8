"""The HTTP service as one FastAPI app: health, readiness and metrics, operator sign-in, the
bank's routes and the ATM lab's. `create_app` builds it; uvicorn serves `app_from_environment`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from config.log_context import RequestIdMiddleware
from config.log_format import configure_logging
from config.settings import Settings, load_settings
from device.sim.api.celery_jobs import CeleryJobs, describe
from device.sim.api.jobs import InProcessJobs
from device.sim.api.lab import Lab
from device.sim.api.lab_routes import lab_router
from device.sim.api.metrics import HttpMetrics, LabCollector
from device.sim.api.offline_docs import serve_docs_offline
from host.api.auth_routes import auth_router
from host.api.bank_routes import bank_router
from host.api.host_metrics import BankCollector
from host.api.operators import OperatorAuth
from host.api.rate_limit import make_rate_limiter
from host.api.readiness import Check, bank_checks
from host.api.schemas import CheckOut, HealthOut, ReadyOut
from host.database import database_url, make_engine

log = logging.getLogger(__name__)

TITLE = "ATM simulator"
DESCRIPTION = """
The bank and the ATM lab of the ATM simulator over HTTP.

Sign in with `POST /auth/token` (an operator made with `atm-sim api create-operator`), then send
`Authorization: Bearer TOKEN`. Roles: **viewer** reads, **operator** also drives lab ATMs and
their faults, **admin** also changes cards. Amounts are integer cents; cards are shown masked
(first 6, last 4); no PIN, PIN block or full card number goes in or out.
"""
ISO_HOST_CONNECT_SECONDS = 1.0
UNPARSABLE_BODY = "There was an error parsing the body"  # FastAPI's words for undecodable bytes


def _iso_host_check(address: tuple[str, int]) -> Check:
    host, port = address
    try:
        with socket.create_connection((host, port), timeout=ISO_HOST_CONNECT_SECONDS):
            return Check(True, f"listening on {host}:{port}")
    except OSError as err:
        return Check(False, f"nothing answers on {host}:{port} ({err.strerror or err})")


def create_app(
    settings: Settings,
    *,
    engine: sa.Engine | None = None,
    iso_host: tuple[str, int] | None = None,
) -> FastAPI:
    """The service on a bank database (`engine`, else the settings' database), with `iso_host`
    the ISO 8583 host this process runs (checked by /ready, and lab ATMs' default host)."""
    own_engine = engine is None
    bank_engine = engine if engine is not None else make_engine(database_url(settings))
    registry = CollectorRegistry()
    jobs = CeleryJobs(settings, InProcessJobs())
    log.info("statement jobs: %s", describe(settings))
    auth = OperatorAuth(
        bank_engine,
        settings,
        limiter=make_rate_limiter(getattr(settings, "redis_url", None)),
    )
    lab = Lab(settings, default_host=iso_host, state_root=settings.atm_sim_home / "lab")
    production = settings.environment == "production"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        lab.stop_all()
        jobs.shutdown()
        if own_engine:
            bank_engine.dispose()

    app = FastAPI(
        title=TITLE,
        description=DESCRIPTION,
        version="1",
        lifespan=lifespan,
        # Production shows no schema or docs: the guide keeps them to development and testing.
        docs_url=None if production else "/docs",
        redoc_url=None if production else "/redoc",
        openapi_url=None if production else "/openapi.json",
    )
    app.state.settings = settings
    app.state.engine = bank_engine
    app.state.registry = registry
    app.state.jobs = jobs
    app.state.auth = auth
    app.state.lab = lab
    registry.register(BankCollector(bank_engine))
    registry.register(LabCollector(lab, jobs.counts))
    app.add_middleware(HttpMetrics, registry=registry)
    app.add_middleware(RequestIdMiddleware)  # outermost: every log line of a request has its id
    serve_docs_offline(app)  # /docs works without internet access

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        # The field and the reason, never the value: it may be a password.
        errors = [
            {key: value for key, value in error.items() if key in ("loc", "msg", "type")}
            for error in err.errors()
        ]
        return JSONResponse({"detail": jsonable_encoder(errors)}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def refused(request: Request, err: StarletteHTTPException) -> Response:
        if err.status_code == 400 and err.detail == UNPARSABLE_BODY:
            # Bytes that are not UTF-8 JSON are wrong input like any other: 422, the body named.
            problem = [
                {"loc": ["body"], "msg": "the body is not UTF-8 JSON", "type": "json_invalid"}
            ]
            return JSONResponse({"detail": problem}, 422)
        return await http_exception_handler(request, err)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        # The traceback goes to the service log, never to the client.
        log.error("unexpected error on %s %s: %r", request.method, request.url.path, err)
        return JSONResponse({"detail": "internal error; the service log has the details"}, 500)

    @app.get("/health", response_model=HealthOut, tags=["service"])
    def health() -> HealthOut:
        """Liveness: the process answers."""
        return HealthOut()

    @app.get(
        "/ready",
        response_model=ReadyOut,
        tags=["service"],
        responses={503: {"model": ReadyOut, "description": "a check failed"}},
    )
    def ready() -> Any:
        """Readiness: the database answers, its schema is at head, the ISO host listens."""
        checks = bank_checks(bank_engine)
        if iso_host is not None:
            checks["iso_host"] = _iso_host_check(iso_host)
        ok = all(check.ok for check in checks.values())
        body = ReadyOut(
            status="ready" if ok else "not ready",
            checks={name: CheckOut(ok=c.ok, detail=c.detail) for name, c in checks.items()},
        )
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["service"],
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def metrics() -> PlainTextResponse:
        """Prometheus metrics in the text format."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(auth_router(auth))
    app.include_router(bank_router(bank_engine, settings, auth, jobs))
    server_url = bank_engine.url.render_as_string(hide_password=False)
    app.include_router(lab_router(lab, auth, jobs, settings, server_url))
    return app


def app_from_environment() -> FastAPI:
    """For `uvicorn --factory device.sim.api.app:app_from_environment`: settings from the
    environment; ISO_HOST=address:port names the bank's ISO 8583 host if one runs beside."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)  # JSON lines, as `atm-sim` does
    iso_host = None
    raw = os.environ.get("ISO_HOST", "").strip()
    if raw:
        address, _, port = raw.rpartition(":")
        if not address or not port.isdigit() or not 0 < int(port) < 65536:
            raise SystemExit(f"ISO_HOST={raw!r}: expected address:port, e.g. 127.0.0.1:8583")
        iso_host = (address, int(port))
    return create_app(settings, iso_host=iso_host)
