-- The event log of one Nocturnus database, in a schema of its own: the same tables as
-- the SQLite log (migrations/sqlite/0001..0003) and nothing else the store sees:
-- ciphertext, ids, kinds, times, wrapped keys. Applied with search_path set to that
-- schema. Shipped migrations are never edited; add 0002_... instead (STYLE rule 11).

-- Append-only. payload = AES-256-GCM(orjson body) under data_keys[key_id];
-- hash chains every row to the one before it (nocturnus/store/chain.py).
CREATE TABLE events (
    seq       BIGINT PRIMARY KEY,
    ts_ms     BIGINT NOT NULL,
    tenant    TEXT   NOT NULL,
    kind      TEXT   NOT NULL,
    key_id    BIGINT NOT NULL,
    nonce     BYTEA  NOT NULL,
    payload   BYTEA  NOT NULL,
    prev_hash BYTEA  NOT NULL,
    hash      BYTEA  NOT NULL
);

CREATE INDEX events_tenant_seq ON events (tenant, seq);

-- One random data key per tenant incarnation ('' = database level), wrapped by the
-- master key. Destroying a key (tenant deletion) sets wrapped to NULL.
CREATE TABLE data_keys (
    key_id          BIGSERIAL PRIMARY KEY,
    tenant          TEXT   NOT NULL,
    wrapped         BYTEA,
    created_seq     BIGINT NOT NULL,
    created_ts_ms   BIGINT NOT NULL,
    destroyed_seq   BIGINT,
    destroyed_ts_ms BIGINT,
    CHECK ((wrapped IS NULL) = (destroyed_seq IS NOT NULL))
);

CREATE UNIQUE INDEX data_keys_live_tenant ON data_keys (tenant) WHERE destroyed_seq IS NULL;

-- Encrypted per-tenant state as of seq; its ciphertext is the parts in order followed
-- by payload.
CREATE TABLE snapshots (
    tenant  TEXT    NOT NULL,
    seq     BIGINT  NOT NULL,
    ts_ms   BIGINT  NOT NULL,
    key_id  BIGINT  NOT NULL,
    nonce   BYTEA   NOT NULL,
    payload BYTEA   NOT NULL,
    parts   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, seq)
);

CREATE TABLE snapshot_parts (
    tenant TEXT    NOT NULL,
    seq    BIGINT  NOT NULL,
    part   INTEGER NOT NULL,
    data   BYTEA   NOT NULL,
    PRIMARY KEY (tenant, seq, part)
);

-- name -> value: database name, master-key check token, chain head (seq, hash). The
-- head row exists from the start: appenders lock it (SELECT ... FOR UPDATE), which is
-- the database's write lock across every node.
CREATE TABLE meta (
    name  TEXT  PRIMARY KEY,
    value BYTEA NOT NULL
);

INSERT INTO meta (name, value) VALUES ('head', decode(repeat('00', 40), 'hex'));

-- Seq ranges that `nocturnus compact` dropped (rows of crypto-shredded tenants).
CREATE TABLE compacted (
    first_seq     BIGINT PRIMARY KEY,
    last_seq      BIGINT NOT NULL,
    compacted_seq BIGINT NOT NULL,
    CHECK (last_seq >= first_seq AND compacted_seq > last_seq)
);
