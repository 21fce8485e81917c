"""A body that is not a JSON object, or a header without a name, is a 400 (issue 14, 11).

The reproduction: ``/context/optimize`` took a JSON ``null`` body as if it were ``{}``,
and a raw request carrying ``: value`` (a header with an empty name) was served.
"""

from __future__ import annotations

import re
import socket

import orjson
import pytest

from nocturnus.api.app import create_app
from nocturnus.api.endpoint import ENDPOINTS, EndpointSpec
from nocturnus.settings import Settings
from tests.server import Server

create_app(Settings(), name="census-malformed")  # registers every endpoint
OBJECT_BODIES = [
    (spec, path)
    for spec in ENDPOINTS
    if spec.body is not None and spec.body.get("type") == "object"
    for path in spec.paths
]
NOT_OBJECTS = [b"null", b"[]", b"[{}]", b"0", b"1.5", b'"text"', b"true", b"false"]


def concrete(path: str) -> str:
    """A path template with every ``<param>`` filled in (``default`` for databases)."""
    return re.sub(r"<db>", "default", re.sub(r"<([a-z_]+)>", r"x_\1", path))


@pytest.mark.parametrize(
    ("spec", "path"), OBJECT_BODIES, ids=[f"{s.method} {p}" for s, p in OBJECT_BODIES]
)
def test_every_object_body_refuses_any_other_json(
    server: Server, tenant: str, spec: EndpointSpec, path: str
) -> None:
    for raw in NOT_OBJECTS:
        response = server.client.request(
            spec.method, concrete(path), content=raw,
            headers={"Content-Type": "application/json", "X-Tenant-ID": tenant},
        )
        assert response.status_code == 400, (raw, response.text)
        error = response.json()
        assert error["code"] == "VALIDATION_ERROR", (raw, error)
        assert error["details"] == {"field": "body"}, (raw, error)


def test_an_optional_body_may_still_be_left_out(server: Server, tenant: str) -> None:
    response = server.client.post("/context/optimize", headers={"X-Tenant-ID": tenant})
    assert response.status_code == 200, response.text


def raw_request(server: Server, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize(
    "bad_line", [b": value", b":", b"Bad Name: x", b"X-Tenant-ID : acme", b" folded: x"]
)
def test_a_header_line_without_a_valid_name_is_refused(
    server: Server, tenant: str, bad_line: bytes
) -> None:
    body = orjson.dumps({"predicate": "smuggled", "args": ["x"]})
    head = (
        b"POST /tell HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"X-Tenant-ID: " + tenant.encode() + b"\r\n" + bad_line + b"\r\n"
    )
    status, answer = raw_request(server, head, body)
    assert status == 400, answer
    assert orjson.loads(answer)["code"] == "VALIDATION_ERROR"
    stored = server.request("POST", "/query", tenant=tenant,
                            json={"predicate": "smuggled", "args": ["?x"]})
    assert stored.json()["count"] == 0


def test_well_formed_raw_headers_are_served(server: Server, tenant: str) -> None:
    body = orjson.dumps({"predicate": "plain", "args": ["x"]})
    head = (
        b"POST /tell HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"X-Tenant-ID: " + tenant.encode() + b"\r\nX-Custom_Header.v2~ok: a:b:c\r\n"
    )
    status, answer = raw_request(server, head, body)
    assert status == 200, answer
