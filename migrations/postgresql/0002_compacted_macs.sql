-- Each compacted seq range carries a MAC under the log's chain key (issue 14), as in
-- migrations/sqlite/0004. Shipped migrations are never edited; add 0003_... instead.
ALTER TABLE compacted ADD COLUMN mac BYTEA;
