"""The console's static files, read once from the installed package.

The console is a handful of plain ES modules, one stylesheet and one page shipped as
package data (no build step, no CDN: nothing is fetched at run time). They never change
while the server runs, so they are read once, when the server starts, and served from
memory with a strong ETag; only names found in the package are ever served.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

PACKAGE = "nocturnus.api.console"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One file: its bytes, its content type and the ETag derived from its bytes."""

    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every shipped file under ``static/`` by its path there (``js/app.js``).

    :raises FileNotFoundError: the package was installed without its static files.
    """
    root = resources.files(PACKAGE) / "static"
    found: dict[str, Asset] = {}
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        for entry in folder.iterdir():
            name = prefix + entry.name
            if entry.is_dir():
                pending.append((entry, name + "/"))
                continue
            suffix = name[name.rfind(".") :]
            if suffix not in CONTENT_TYPES:
                continue
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            found[name] = Asset(body, CONTENT_TYPES[suffix], etag)
    if "index.html" not in found:
        raise FileNotFoundError(
            f"{PACKAGE}: static/index.html is missing from the install"
        )
    return found
