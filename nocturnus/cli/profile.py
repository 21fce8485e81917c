"""The client's files in the user's config dir: the saved login and the REPL history.

The directory is ``$XDG_CONFIG_HOME/nocturnus`` (``~/.config/nocturnus`` without it),
made 0700; ``login.json`` (server URL, API key, database, tenant) is written 0600 and
replaced whole, never half-written, since it holds a key.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from nocturnus.errors import ValidationError

LOGIN_FILE = "login.json"
HISTORY_FILE = "history"


def config_dir(environ: dict[str, str] | None = None) -> Path:
    """Where the client keeps its files (not created here)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "").strip()
    root = Path(base) if base else Path.home() / ".config"
    return root / "nocturnus"


def private_config_dir() -> Path:
    """:func:`config_dir`, created 0700 if missing."""
    path = config_dir()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@dataclass(frozen=True, slots=True)
class Login:
    """What ``nocturnus login`` saved: the server and how to talk to it."""

    url: str
    key: str | None = None
    database: str | None = None
    tenant: str | None = None


def load_login() -> Login | None:
    """The saved login, or None before the first ``nocturnus login``.

    :raises ValidationError: the file is not a login this client wrote.
    """
    path = config_dir() / LOGIN_FILE
    try:
        raw = json.loads(path.read_text())
        return Login(**{k: raw.get(k) for k in ("url", "key", "database", "tenant")})
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, AttributeError) as e:
        raise ValidationError(f"{path} is not a saved login ({e}); run nocturnus login") from e


def save_login(login: Login) -> Path:
    """Write ``login`` 0600 (to a temporary file renamed over the old one)."""
    path = private_config_dir() / LOGIN_FILE
    scratch = path.with_name(f".{LOGIN_FILE}.{os.getpid()}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(login), handle, indent=2)
    os.replace(scratch, path)
    return path


def forget_login() -> bool:
    """Remove the saved login; False when there was none."""
    try:
        (config_dir() / LOGIN_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def history_path() -> Path:
    """The REPL's history file (inside the 0700 config dir)."""
    return private_config_dir() / HISTORY_FILE
