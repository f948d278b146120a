"""GET /docs: Swagger UI served from this server, so it works offline (no CDN).

Swagger UI's files come from the `fastapi-offline` package (it ships swagger-ui-dist); the page
and its start-up script are served here rather than FastAPI's own /docs page, whose inline
script would need 'unsafe-inline' in the Content-Security-Policy (headers.py: only 'self').
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import swagger_ui_default_parameters
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))

_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>weedscan API</title>
<link rel="icon" href="{ASSETS_URL}/favicon.png">
<link rel="stylesheet" href="{ASSETS_URL}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS_URL}/swagger-ui-bundle.js"></script>
<script src="{DOCS_URL}/start.js"></script>
</body>
</html>
"""


def _start_script(openapi_url: str) -> str:
    # validatorUrl null: Swagger UI would otherwise ask validator.swagger.io about the schema
    config = {**swagger_ui_default_parameters, "url": openapi_url, "validatorUrl": None}
    return (f"window.ui = SwaggerUIBundle(Object.assign({json.dumps(config)}, "
            "{presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]}));\n")


def docs_router(openapi_url: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    script = _start_script(openapi_url)

    @router.get(DOCS_URL)
    async def docs() -> HTMLResponse:
        return HTMLResponse(_PAGE)

    @router.get(f"{DOCS_URL}/start.js")
    async def start() -> Response:
        return Response(script, media_type="text/javascript")

    return router


def docs_assets() -> StaticFiles:
    return StaticFiles(directory=ASSETS_DIR)
