-- 007_identity_junk_and_lock_order: placeholder values by pattern and on
-- the raw value; an identifier that would break a limit is not matched; one
-- lock order for every path that locks customers.
--
-- ---- lock order ---------------------------------------------------------------------
--
-- Every transaction that writes customer data takes its locks in this order,
-- each step complete before the next begins:
--   1. advisory transaction locks on identifier keys (pg_advisory_xact_lock of
--      hashtextextended(kind || chr(31) || namespace || chr(31) || value, 0)),
--      ascending: crm.resolve for its identifiers, crm.lock_batch for those of
--      every batch item crm.resolve will look at;
--   2. the rows in crm.customers of every customer it will write to (for an
--      absorbed id, its survivor), FOR NO KEY UPDATE - one mode for every
--      writer, so one writer per customer at a time - ascending customer_id,
--      re-checked after locking (a merge may have moved identifiers meanwhile:
--      the locks are then given back by rolling back a subtransaction and taken
--      again); crm.resolve, crm.lock_survivor(s), crm.lock_batch, merge,
--      unmerge, erasure;
--   3. the rows that belong to those customers (identifiers, traits,
--      interactions, interaction_stats, customer_needs, profile_cache,
--      preferences, consents, merges, and the crm.customers rows of the
--      customers they absorbed), in any order: only the holder of a
--      customer's lock writes them. A lock attempt that finds its row merged
--      meanwhile is rolled back (subtransaction) so that no stray lock on an
--      absorbed row is kept;
--   4. interaction idempotency keys (source, external_id): a batch inserts its
--      interactions in ascending (source, external_id) order.
-- Before 007 a batch share-locked its known customers up front, then resolved
-- the other items one by one (advisory locks and exclusive row locks taken in
-- item order, upgrading share locks other batches also held) and wrote stats,
-- needs and profile_cache rows of many customers in whatever order the plan
-- produced: a storm of 1,600 mixed requests (tests/e2e/test_identity.py,
-- LockOrderTests) saw 103 deadlocks. Readers lock nothing but a profile_cache
-- row (crm.profile_cache_store), one at a time.
--
-- ---- blocked values -------------------------------------------------------------
--
-- A blocked row is either an exact value (as before) or, with pattern, a
-- PostgreSQL regular expression matched against the lower-cased value. Both
-- are checked on the normalised value and on the value as the client wrote
-- it ("raw", trimmed, sent by the server when it differs): normalisation
-- turns the loyalty card "-1" into "1", which matched no block.
--
-- ---- limits -----------------------------------------------------------------------
--
-- crm.resolve found the customer first and checked the limits afterwards, so
-- a junk value nobody had blocked (a card "1" on a customer who had reached
-- five emails) handed its owner to every new person who sent it with their
-- own email: their email was dropped, their interactions and traits landed
-- on the owner. Now, before anything is written:
--   * a new identifier the customer found cannot take (its kind is at the
--     limit) is not attached, as before, if the request also names that
--     customer by an identifier of the same kind (one email too many for a
--     person it clearly names): ignored, reason identifier_would_exceed_limit;
--   * otherwise the identifiers that led to that customer are the ones that
--     would break the limit: they are not used for matching (ignored, reason
--     match_would_exceed_limit) and the request goes on with the others, a
--     new customer when nothing else matches.
-- Every ignored identifier is listed in the answer's `ignored` with its
-- reason (blocked ones with reason "blocked"); the limit cases are also
-- conflicts, recorded in crm.identity_conflicts.
--
-- The functions, triggers and views this migration created now live in
-- sql/functions/ (one current definition each, applied after the migrations
-- at every start); this file keeps its tables, indexes and data.

ALTER TABLE crm.blocked_identifiers ADD COLUMN pattern boolean NOT NULL DEFAULT false;

INSERT INTO crm.blocked_identifiers (kind, value, reason, builtin)
SELECT '*', v, 'placeholder value', true
  FROM unnest(ARRAY['[object object]', 'nan', 'undefined undefined', 'null null',
                    'none none', 'n.a.', 'n/a n/a']) AS v
ON CONFLICT (kind, value) DO NOTHING;

-- example.com and the .example top-level domain are left out on purpose: this
-- repository's tests, benchmarks and documentation use them for real,
-- distinct customers (RFC 2606 documentation names). A production database
-- adds them with POST /v1/admin/blocked-identifiers (docs/identity.md).
INSERT INTO crm.blocked_identifiers (kind, value, reason, builtin, pattern) VALUES
    ('phone', '^\+([0-9])\1+$', 'placeholder phone: every digit the same', true, true),
    ('loyalty_card', '^([0-9])\1*$', 'placeholder card: every digit the same', true, true),
    ('email', '^(anonymous|anon|nobody|noemail|no-email|nomail|no-mail|noreply|no-reply|'
              'donotreply|do-not-reply|none|null|nil|n/a|unknown|undefined|guest|test)@',
     'placeholder mailbox', true, true),
    ('email', '@([a-z0-9-]+\.)*(example\.org|example\.net|test\.com)$',
     'reserved or test mail domain', true, true),
    ('email', '\.(test|invalid|localhost)$', 'reserved top-level domain', true, true)
ON CONFLICT (kind, value) DO NOTHING;
