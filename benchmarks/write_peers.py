"""The peers Nocturnus's durable ``POST /tell`` is measured against, as Sanic apps.

- ``NOOP_APP``: the issue's peer, a Sanic handler that answers JSON and does nothing.
- ``FLOOR_APP``: the least a durable, encrypted, hash-chained write can do in Python on
  Sanic: parse the JSON body, refuse a repeated fact from an in-memory dict, encrypt
  the event (AES-256-GCM), chain its hash (SHA-256), hand it to a writer thread that
  group-commits to SQLite (WAL, ``synchronous=FULL``), answer once it is durable. No
  validation, tenants, projection, inference index, authorization, metrics or access
  log. It shows what the stack itself allows; the gap from it to Nocturnus is the cost
  of those features.

Both run as ``python -c APP PORT [DB_FILE]``, single process, access log off.
"""

from __future__ import annotations

import textwrap

_SERVE = textwrap.dedent(
    """
    @app.get("/health/ready")
    async def ready(request):
        return json({"status": "ok"})

    app.run(host="127.0.0.1", port=int(sys.argv[1]), single_process=True,
            access_log=False, debug=False)
    """
)
"""What both apps end with: a readiness route and a single-process run on argv[1]."""

NOOP_APP = textwrap.dedent(
    """
    import sys
    from sanic import Sanic
    from sanic.response import json

    app = Sanic("noop")
    app.config.MOTD = False

    @app.post("/tell")
    async def tell(request):
        return json({"stored": True})

    """
) + _SERVE

FLOOR_APP = textwrap.dedent(
    """
    import asyncio, hashlib, os, sqlite3, sys, threading
    import orjson
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from sanic import Sanic
    from sanic.response import json

    app = Sanic("floor")
    app.config.MOTD = False
    aead = AESGCM(os.urandom(32))
    facts, chain, queue = {}, {"seq": 0, "hash": bytes(32)}, []
    wake = threading.Condition()

    def writer(path, loop):
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS events"
                     " (seq INTEGER PRIMARY KEY, nonce BLOB, payload BLOB, hash BLOB)")
        while True:
            with wake:
                while not queue:
                    wake.wait()
                batch = queue[:]
                queue.clear()
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", [b[0] for b in batch])
            conn.execute("COMMIT")
            loop.call_soon_threadsafe(resolve, [b[1] for b in batch])

    def resolve(futures):
        for future in futures:
            future.set_result(None)

    @app.before_server_start
    async def start(app):
        loop = asyncio.get_running_loop()
        threading.Thread(target=writer, args=(sys.argv[2], loop), daemon=True).start()

    @app.post("/tell")
    async def tell(request):
        body = orjson.loads(request.body)
        key = (body["predicate"], tuple(body["args"]))
        if key in facts:
            return json({"stored": False})
        seq = chain["seq"] = chain["seq"] + 1
        nonce = os.urandom(12)
        payload = aead.encrypt(nonce, orjson.dumps(body), seq.to_bytes(8, "big"))
        digest = hashlib.sha256(chain["hash"] + seq.to_bytes(8, "big") + payload).digest()
        chain["hash"] = facts[key] = digest
        future = asyncio.get_running_loop().create_future()
        with wake:
            queue.append(((seq, nonce, payload, digest), future))
            wake.notify()
        await future
        return json({"stored": True})

    """
) + _SERVE
