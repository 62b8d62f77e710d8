"""/docs in a real browser: headless Chromium (Debian's, driven by Playwright) against a live
`atm-sim api serve` loads the page, lists the endpoints, and runs /health with Try it out.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.live_api import LiveApi, live_api, product_env, wait_healthy

CHROMIUM = os.environ.get("ATM_SIM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
INSTALL = (
    "install Debian's chromium (apt-get install chromium) and Playwright's Python package "
    "(pip install -e '.[dev]'); Playwright's own browser downloads are not needed"
)

try:
    from playwright.sync_api import Browser, Page, sync_playwright
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
except ImportError:  # the browser test is optional on a machine without Playwright
    pytest.skip(f"no playwright package: {INSTALL}", allow_module_level=True)
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no chromium at {CHROMIUM}: {INSTALL}", allow_module_level=True)

PAGE_SECONDS = 30  # the page, the schema and a request; the machine may be busy
HEALTH_OPERATION = "#operations-service-health_health_get"


@pytest.fixture(scope="module")
def api(
    make_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    """The service starting; it boots while the browser launches."""
    workdir = tmp_path_factory.mktemp("api")
    env = product_env(workdir / "home", DATABASE_URL=make_database())
    with live_api(workdir, env, wait=False) as started:
        yield started


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # Debian's build, never Playwright's download; no sandbox, as CI runs as root.
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def docs(api: LiveApi, browser: Browser) -> Iterator[Page]:
    """The page, loaded once: Swagger UI's bundle is large for a busy machine."""
    wait_healthy(api)
    page = browser.new_page()
    page.set_default_timeout(PAGE_SECONDS * 1000)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(f"{api.url}/docs")
    try:
        page.locator(".opblock").first.wait_for()
    except PlaywrightTimeoutError:
        pytest.fail(f"/docs shows no endpoints after {PAGE_SECONDS} s; failed to load: {failed}")
    yield page
    page.close()
    assert failed == [], f"the docs page could not load {failed}"


def test_the_docs_page_lists_the_endpoints(docs: Page) -> None:
    assert "ATM simulator" in docs.title()
    paths = set(docs.locator(".opblock-summary-path").all_inner_texts())
    paths = {path.replace("\u200b", "") for path in paths}  # Swagger breaks long paths with ZWSP
    assert {"/health", "/ready", "/metrics", "/auth/token", "/lab/atms"} <= paths
    schema: dict[str, Any] = docs.evaluate("async () => (await fetch('/openapi.json')).json()")
    assert paths == set(schema["paths"])  # every path of the schema has its section


def test_try_it_out_on_health_answers_200(docs: Page) -> None:
    operation = docs.locator(HEALTH_OPERATION)
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status")
    status.wait_for()
    assert status.inner_text().strip() == "200"
    body = operation.locator(".live-responses-table tbody .response-col_description pre").first
    assert '"status": "ok"' in body.inner_text()
