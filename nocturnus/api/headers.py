"""The header block of a request: every field name must be an HTTP token.

Sanic splits each header line at its first colon and keeps whatever stands before it,
so ``: value`` arrived as a header with an empty name, and ``Bad Name: x`` or a folded
continuation line as names no HTTP peer would send (issue 14, item 11). A proxy in
front may read such lines differently from us; the request is refused instead.
"""

from __future__ import annotations

import re

from sanic import Request

from nocturnus.errors import ValidationError

# A line of the head (after the request line) not starting with ``token:`` (RFC 9110
# §5.1: field-name = token; no whitespace before the colon).
_BAD_LINE = re.compile(rb"\r\n(?![!#$%&'*+.^_`|~0-9A-Za-z-]+:)")


def check_names(request: Request) -> None:
    """:raises ValidationError: a header line without a valid field name (400)."""
    head = request.head
    bad = _BAD_LINE.search(head)
    if bad is not None:
        line = head[bad.end() :].split(b"\r\n", 1)[0]
        shown = line.split(b":", 1)[0][:40].decode("ascii", "replace")
        raise ValidationError(
            f"header name {shown!r} is not a valid HTTP field name", field="headers"
        )
