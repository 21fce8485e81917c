"""A real Nocturnus server in a subprocess on a free port, for API tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

TEST_MASTER_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """Start ``nocturnus serve`` on ``data_dir``; ``client`` talks to it over a real socket."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, port: int | None = None,
                 args: tuple[str, ...] = ()):
        self.data_dir = data_dir
        self.args = args
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Uses of facts are logged with writes and at shutdown only unless a test sets
        # a flush interval: a timer would make windows change at moments no test picks.
        self.env = {**os.environ, "NOCTURNUS_MASTER_KEY": TEST_MASTER_KEY,
                    "NOCTURNUS_USES_FLUSH_MS": "0", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def start(self, timeout_s: float = 30) -> Server:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)  # the server makes data_dir
        # The child holds its own copy of the log's descriptor; ours closes at once.
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nocturnus", "serve", "--port", str(self.port),
                 "--data-dir", str(self.data_dir), *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output()}")
            try:
                if self.client.get("/health/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not become ready:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout_s)
        self.process = None
        return code

    def request(self, method: str, path: str, *, tenant: str | None = None,
                database: str | None = None, json: Any = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if tenant is not None:
            headers["X-Tenant-ID"] = tenant
        if database is not None:
            headers["X-Database"] = database
        return self.client.request(method, path, json=json, headers=headers, **kwargs)
