-- A big snapshot is stored in parts, one short transaction each, so the appends of
-- other requests commit in between (issue 3: snapshots never block writes). Its
-- ciphertext is the parts in order followed by the snapshots row's payload; the row is
-- written last, in the transaction that checks every part is there, so a crash
-- mid-way leaves parts no row names: never read, removed by that tenant's next save.
-- A snapshot written whole (parts = 0) is exactly what 0001 stored.
ALTER TABLE snapshots ADD COLUMN parts INTEGER NOT NULL DEFAULT 0;

CREATE TABLE snapshot_parts (
    tenant TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    part   INTEGER NOT NULL,
    data   BLOB    NOT NULL,
    PRIMARY KEY (tenant, seq, part)
);
