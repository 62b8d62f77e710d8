"""Fuzz the whole OpenAPI schema with schemathesis against the app in process (ASGI), on the real
bank, ISO host and a live lab ATM: no answer is a 500, and every answer matches the schema.

Left out: signing out (it would end the fuzzer's own token), stopping the lab ATM (every later
lab case would only find a 404) and `wait` (each case may hold for 30 s); tests/e2e/test_api_lab.py
covers them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.settings import load_settings
from device.sim.api.app import create_app
from device.sim.bank_stack import BankStack
from tests.api_support import add_operators, sign_in
from tests.conftest import TEST_SECRETS

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES_PER_OPERATION = 4


@dataclass
class FuzzTarget:
    app: FastAPI
    headers: dict[str, str]


@pytest.fixture(scope="module")
def fuzz_target(
    make_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    home: Path = tmp_path_factory.mktemp("fuzz")
    bank_settings = load_settings(
        {
            **TEST_SECRETS,
            "DATABASE_URL": make_database(),
            "ATM_SIM_HOME": str(home),
            "STATEMENT_OUTPUT_DIR": str(home / "statements"),
        }
    )
    with BankStack(bank_settings) as stack:
        add_operators(stack.engine, bank_settings)
        app = create_app(
            bank_settings, engine=stack.engine, iso_host=("127.0.0.1", stack.server.port)
        )
        with TestClient(app) as client:
            headers = sign_in(client, "admin")
            created = client.post("/lab/atms", json={"profile": "default"}, headers=headers)
            assert created.status_code == 201, created.text
            yield FuzzTarget(app, headers)
            app.state.jobs.shutdown(wait=True)


EXCLUDED = (
    ("DELETE", "/auth/token"),
    ("DELETE", "/lab/atms/{terminal_id}"),
    ("POST", "/lab/atms/{terminal_id}/wait"),
)


def _fuzz(strategy: st.SearchStrategy[schemathesis.Case], headers: dict[str, str]) -> None:
    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    call()


def test_no_answer_is_a_500_and_every_answer_matches_the_schema(fuzz_target: FuzzTarget) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_target.app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        operations += 1
        strategies = {
            "example": st.one_of(operation.get_strategies_from_examples() or [st.nothing()]),
            "positive": operation.as_strategy(GenerationMode.POSITIVE),
            "negative": operation.as_strategy(GenerationMode.NEGATIVE),
        }
        for kind, strategy in strategies.items():
            if kind == "example" and strategy.is_empty:
                continue
            started = time.perf_counter()
            try:
                _fuzz(strategy, fuzz_target.headers)
            except Unsatisfiable:
                continue  # no parameters to make wrong: there is no negative case
            except (Exception, BaseExceptionGroup) as err:  # collected, then all reported
                failures.append(f"{operation.label} ({kind}): {err}")
            finally:
                print(f"{time.perf_counter() - started:6.2f} s {operation.label} ({kind})")
    assert operations >= 40
    assert not failures, "\n\n".join(failures)
