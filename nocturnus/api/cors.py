"""CORS: off unless ``NOCTURNUS_CORS_ORIGINS`` lists the browser origins allowed.

With no list, no response carries ``Access-Control-Allow-Origin`` and every preflight is
refused, so browsers cannot call the API from another origin. ``*`` allows any origin
(keys still apply; credentials are never allowed by CORS here: keys travel in headers).
"""

from __future__ import annotations

from sanic import HTTPResponse, Request

from nocturnus.api.errors import envelope

ALLOW_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = (
    "Authorization, Content-Type, X-API-Key, X-Database, X-Tenant-ID, X-Request-ID, "
    "Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID"
)
EXPOSE_HEADERS = (
    "X-Request-ID, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, "
    "Retry-After, Mcp-Session-Id"
)
MAX_AGE_S = "600"


class Cors:
    """The allowed origins and the headers that follow from them."""

    def __init__(self, origins: str) -> None:
        names = [o.strip().rstrip("/") for o in origins.split(",") if o.strip()]
        self.any_origin = "*" in names
        self.origins = frozenset(n for n in names if n != "*")
        self.enabled = self.any_origin or bool(self.origins)

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin.rstrip("/") in self.origins

    @staticmethod
    def is_preflight(request: Request) -> bool:
        return (
            request.method == "OPTIONS"
            and "origin" in request.headers
            and "access-control-request-method" in request.headers
        )

    def preflight(self, request: Request) -> HTTPResponse:
        """Answer a preflight: 204 with the allowances, or 403 for an unlisted origin."""
        origin = request.headers.get("origin", "")
        if not self.allows(origin):
            return envelope(
                403, "FORBIDDEN", f"CORS: origin {origin[:200]!r} is not allowed",
                {"origin": origin[:200]},
            )
        response = HTTPResponse(status=204)
        self._allow(origin, response)
        response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = MAX_AGE_S
        return response

    def decorate(self, request: Request, response: HTTPResponse) -> None:
        """Add the allow/expose headers to an answer for an allowed origin."""
        if not self.enabled:
            return
        origin = request.headers.get("origin")
        if origin and self.allows(origin):
            self._allow(origin, response)
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS

    def _allow(self, origin: str, response: HTTPResponse) -> None:
        response.headers["Access-Control-Allow-Origin"] = "*" if self.any_origin else origin
        if not self.any_origin:
            response.headers["Vary"] = "Origin"
