-- Seq ranges that `nocturnus compact` dropped (rows of crypto-shredded tenants).
-- The hash chain skips exactly these seqs; any other missing seq is a removed row.
-- Shipped migrations are never edited; add 0003_... instead (STYLE rule 11).
CREATE TABLE compacted (
    first_seq     INTEGER PRIMARY KEY,
    last_seq      INTEGER NOT NULL,
    compacted_seq INTEGER NOT NULL,
    CHECK (last_seq >= first_seq AND compacted_seq > last_seq)
);
