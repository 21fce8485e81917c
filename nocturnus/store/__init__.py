"""Storage: one encrypted, hash-chained event log per database, on SQLite or PostgreSQL.

- ``recorder``: the :class:`Recorder` protocol and its contract (rows, positions, the
  write lock, tailing); ``sqlite`` and ``postgresql`` implement it. They and the two
  backends of ``shared`` are the only modules that import a driver.
- ``shared``: :class:`SharedState`, what every process of a deployment must see that is
  not knowledge (sessions, counters), in ``shared.sqlite`` or a PostgreSQL table.
- ``sealer``: :class:`Sealer`, the event log the service uses over any recorder: AAD,
  AES-256-GCM per tenant, the chain, the optimistic check of appends.
- ``record``: :class:`LogRecord` and the canonical AAD / hash framing.
- ``crypto``: master key loading, data-key wrapping, AES-256-GCM.
- ``keys``: per-tenant data keys (lazy creation, destruction = crypto-shredding).
- ``chain``: the hash chain and its checks.
- ``snapshots``: sealing snapshots into pieces and opening them.
- ``verify``, ``compact``, ``rotate``: one maintenance job each, against the protocol.
- ``writer``: :class:`Writer`, the thread that writes a database (group commit).
- ``migrate``: numbered SQL migrations per backend from the repo's ``migrations/``.
- ``errors``: store errors, every one naming what failed and the seq.
"""
