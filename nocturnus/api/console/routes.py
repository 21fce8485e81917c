"""``GET /console``: the web console's page, stylesheet and script modules (issue 21).

These routes serve only the static files of the console, never data, so they need no
key: the page asks for the key itself and sends it with every call it makes to the
public API, where each call is checked like any other client's. Every answer carries
a strict Content-Security-Policy (scripts and styles from this origin only, no inline
code, no framing), so rendered data can never run as code even if escaping failed.
"""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse, Sanic

from nocturnus.api.console.assets import Asset, load_assets
from nocturnus.api.endpoint import Call, endpoint
from nocturnus.errors import NotFound

console = Blueprint("console")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@console.before_server_start
async def read_assets(app: Sanic) -> None:
    app.ctx.console_assets = load_assets()


def _serve(call: Call, name: str) -> HTTPResponse:
    assets: dict[str, Asset] = call.request.app.ctx.console_assets
    asset = assets.get(name)
    if asset is None:
        raise NotFound(f"No console file named {name!r}")
    headers = {
        "ETag": asset.etag,
        "Cache-Control": "no-cache",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Referrer-Policy": "no-referrer",
    }
    if call.request.headers.get("if-none-match") == asset.etag:
        return HTTPResponse(status=304, headers=headers)
    return HTTPResponse(asset.body, content_type=asset.content_type, headers=headers)


@endpoint(
    console,
    "GET",
    "/console",
    summary="The web console (a static page; no data)",
    response_type="text/html",
)
async def page(call: Call) -> HTTPResponse:
    return _serve(call, "index.html")


@endpoint(
    console,
    "GET",
    "/console/console.css",
    summary="The web console's stylesheet",
    response_type="text/css",
)
async def stylesheet(call: Call) -> HTTPResponse:
    return _serve(call, "console.css")


@endpoint(
    console,
    "GET",
    "/console/js/<module>",
    summary="One of the web console's script modules",
    response_type="text/javascript",
)
async def script(call: Call) -> HTTPResponse:
    return _serve(call, "js/" + call.query["module"])
