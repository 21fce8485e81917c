"""The HTTP client the ``nocturnus`` client commands use to talk to a server.

Built on the standard library's ``urllib`` so that the client adds no runtime
dependency: one JSON request, one JSON (or text) answer. An error answer becomes a
:class:`ClientError` carrying the server's envelope (``code``, ``message``,
``details``); a server that cannot be reached becomes one too, naming the URL.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from nocturnus.errors import NocturnusError

DEFAULT_URL = "http://127.0.0.1:9300"
TIMEOUT_S = 60.0


class ClientError(NocturnusError):
    """A request the server refused (its envelope) or could not be sent.

    ``http_status`` and ``server_code`` are the answer's (None when none came).
    """

    code = "CLIENT_ERROR"

    def __init__(
        self,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        http_status: int | None = None,
        server_code: str | None = None,
    ) -> None:
        super().__init__(message, details)
        self.http_status = http_status
        self.server_code = server_code


@dataclass(frozen=True, slots=True)
class Client:
    """A server, the key presented to it, and the database/tenant calls go to."""

    url: str
    key: str | None = None
    database: str = "default"
    tenant: str = "default"
    timeout_s: float = TIMEOUT_S

    def call(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        """Send one request; the decoded JSON answer (text when not JSON).

        :raises ClientError: an error status (with the server's message) or no answer.
        """
        url = self.url.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode(
                {k: v for k, v in query.items() if v is not None}
            )
        headers = {
            "Accept": "application/json",
            "X-Database": self.database,
            "X-Tenant-ID": self.tenant,
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return _decode(response.read(), response.headers.get("Content-Type", ""))
        except urllib.error.HTTPError as e:
            raise _refused(e) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise ClientError(f"cannot reach the server at {self.url}: {reason}") from None


def _decode(raw: bytes, content_type: str) -> Any:
    if "json" in content_type:
        return json.loads(raw) if raw else None
    return raw.decode("utf-8", errors="replace")


def _refused(error: urllib.error.HTTPError) -> ClientError:
    """The server's envelope as an error: ``409 CONFLICT: <message>``."""
    raw = error.read()
    try:
        envelope = json.loads(raw)
        code, message = envelope["code"], envelope["message"]
        details = envelope.get("details") or {}
    except (ValueError, KeyError, TypeError):
        code, message, details = None, raw.decode("utf-8", errors="replace")[:200], {}
    label = f"{error.code} {code}" if code else str(error.code)
    return ClientError(
        f"{label}: {message}", details, http_status=error.code, server_code=code
    )
