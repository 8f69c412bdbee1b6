-- 005_profile_cache: the profile document, maintained instead of rebuilt on
-- every read, and read-audit rows written in batches by the server.
--
-- crm.profile() runs about twenty subqueries; the call centre reads the same
-- profile many times between two writes. The built document is kept in
-- crm.profile_cache and invalidated by triggers in the same transaction as
-- every write that changes what the profile shows, so a read that follows a
-- committed write never sees the old document.
--
-- The invalidation protocol (why a concurrent read cannot put back a stale
-- document): every cache row carries a version. A write bumps the version
-- (inserting the row if needed) and clears the document; a read that misses
-- remembers the version it saw, builds the document, and stores it only if
-- the version is still the same (or, with no row, only if nobody inserted
-- one meanwhile). A write that committed after the reader's snapshot has
-- bumped the version, so the reader's store does nothing. Changes that touch
-- every customer at once (a value run, a settings change) bump one global
-- epoch instead; a document stored under an older epoch is a miss.
-- Consents recorded with a future occurred_at change the document with no
-- write at all, so a document is also only valid until the next such time.
--
-- The functions, triggers and views this migration created now live in
-- sql/functions/ (one current definition each, applied after the migrations
-- at every start); this file keeps its tables, indexes and data.

CREATE TABLE crm.profile_cache (
    customer_id  uuid PRIMARY KEY,
    version      bigint NOT NULL DEFAULT 0,
    epoch        bigint NOT NULL DEFAULT 0,
    doc          jsonb,          -- NULL: invalidated, build again
    valid_until  timestamptz     -- NULL: until the next write
) WITH (fillfactor = 80);

CREATE TABLE crm.profile_cache_epoch (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    epoch     bigint NOT NULL
);
INSERT INTO crm.profile_cache_epoch VALUES (true, 1);
ANALYZE crm.profile_cache_epoch; -- one row: let the planner know from the start

-- crm.read_profile (003/004) read and audited in one call; reads now go
-- through crm.profile_read and the server's audit batches, so it has no caller.
DROP FUNCTION IF EXISTS crm.read_profile(uuid, uuid, text, text);
