-- The event log of one database: events, wrapped tenant data keys, snapshots, meta.
-- Shipped migrations are never edited; add 0002_... instead (STYLE rule 11).

-- Append-only. payload = AES-256-GCM(orjson body) under data_keys[key_id];
-- hash chains every row to the one before it (nocturnus/store/chain.py).
CREATE TABLE events (
    seq       INTEGER PRIMARY KEY,
    ts_ms     INTEGER NOT NULL,
    tenant    TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    key_id    INTEGER NOT NULL,
    nonce     BLOB    NOT NULL,
    payload   BLOB    NOT NULL,
    prev_hash BLOB    NOT NULL,
    hash      BLOB    NOT NULL
);

CREATE INDEX events_tenant_seq ON events (tenant, seq);

-- One random data key per tenant incarnation ('' = database level), wrapped by the
-- master key. Destroying a key (tenant deletion) sets wrapped to NULL and records when:
-- every event and snapshot under it is then unreadable (crypto-shredding).
CREATE TABLE data_keys (
    key_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant          TEXT    NOT NULL,
    wrapped         BLOB,
    created_seq     INTEGER NOT NULL,
    created_ts_ms   INTEGER NOT NULL,
    destroyed_seq   INTEGER,
    destroyed_ts_ms INTEGER,
    CHECK ((wrapped IS NULL) = (destroyed_seq IS NOT NULL))
);

-- At most one live key per tenant.
CREATE UNIQUE INDEX data_keys_live_tenant ON data_keys (tenant) WHERE destroyed_seq IS NULL;

-- Encrypted per-tenant state as of seq (AAD = database, "snapshot", tenant, seq).
CREATE TABLE snapshots (
    tenant    TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    ts_ms     INTEGER NOT NULL,
    key_id    INTEGER NOT NULL,
    nonce     BLOB    NOT NULL,
    payload   BLOB    NOT NULL,
    PRIMARY KEY (tenant, seq)
);

-- name -> value: database name, master-key check token, chain head (seq, hash).
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
