"""Storage: one encrypted, hash-chained SQLite event log per database.

- ``record``: :class:`LogRecord` and the canonical AAD / hash framing.
- ``crypto``: master key loading, data-key wrapping, AES-256-GCM.
- ``keys``: per-tenant data keys (lazy creation, destruction = crypto-shredding).
- ``chain``: the hash chain and its checks.
- ``log``: :class:`EventLog` (append, read, head, tenants, snapshots, verify).
- ``snapshots``, ``verify``: the parts of the log with their own job.
- ``writer``: :class:`Writer`, the one thread that writes a file (group commit).
- ``migrate``: numbered SQL migrations from the repo's ``migrations/``.
- ``errors``: store errors, every one naming what failed and the seq.
"""
