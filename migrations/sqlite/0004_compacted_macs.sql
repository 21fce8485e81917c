-- Each compacted seq range carries a MAC under the log's chain key (issue 14), so the
-- chain accepts only gaps that a holder of the master key recorded. NULL until the
-- log's first read-write open under a keyed chain fills it in (the upgrade from the
-- plain SHA-256 chain needs the master key, which a migration does not have).
-- Shipped migrations are never edited; add 0005_... instead (STYLE rule 11).
ALTER TABLE compacted ADD COLUMN mac BLOB;
