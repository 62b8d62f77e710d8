"""The /docs and /redoc pages served with their scripts and styles from this process, not from a
CDN, so that the API docs work on a machine or in a container without internet access.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
# Swagger UI 5 and ReDoc 2 as fastapi-offline ships them (Swagger UI 4 cannot read OpenAPI 3.1).
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"


def serve_docs_offline(app: FastAPI) -> None:
    """Replace FastAPI's CDN-based docs pages with local ones at the same URLs; an app whose
    docs are off (production) is left as it is."""
    if app.openapi_url is None or (app.docs_url is None and app.redoc_url is None):
        return
    openapi_url = app.openapi_url
    docs_url, redoc_url = app.docs_url, app.redoc_url
    oauth2_url = app.swagger_ui_oauth2_redirect_url if docs_url else None
    replaced = {docs_url, redoc_url, oauth2_url} - {None}
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", "") not in replaced]
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    def assets(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{ASSETS_URL}"

    if docs_url is not None:

        @app.get(docs_url, include_in_schema=False)
        async def swagger_ui(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            return get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=oauth2_url,
                swagger_js_url=f"{assets(request)}/swagger-ui-bundle.js",
                swagger_css_url=f"{assets(request)}/swagger-ui.css",
                swagger_favicon_url=f"{assets(request)}/favicon.png",
                swagger_ui_parameters=app.swagger_ui_parameters,
            )

        if oauth2_url is not None:

            @app.get(oauth2_url, include_in_schema=False)
            async def swagger_ui_redirect() -> HTMLResponse:
                return get_swagger_ui_oauth2_redirect_html()

    if redoc_url is not None:

        @app.get(redoc_url, include_in_schema=False)
        async def redoc(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            return get_redoc_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{assets(request)}/redoc.standalone.js",
                redoc_favicon_url=f"{assets(request)}/favicon.png",
                with_google_fonts=False,
            )
