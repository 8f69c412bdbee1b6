-- 012_segment_membership: live segment membership (docs/segments.md).
--
-- A segment's members are kept in crm.segment_members, current: the
-- segment's rule is compiled once (at create, PATCH, or when the server's
-- compiler is newer than the one that compiled it) and stored with the
-- inputs it depends on; a refresher in the server follows the change feed
-- after its own cursor and re-evaluates, set-wise, only the segments that
-- depend on what changed, only for the customers it changed, and writes
-- segment.entered / segment.exited events into crm.events in the same
-- transaction. Ingest does no membership work: the feed carries the change.
--
-- This file holds the tables, the columns and the refresher's state row;
-- the functions and triggers are in sql/functions/membership.sql.

-- The stored compiled rule. condition is the compiler's SQL text (built
-- from the server's whitelist only) whose every value is an element of the
-- text[] params, read as ($1[n]) and passed with EXECUTE ... USING: no rule
-- value is ever part of SQL text. depends: the inputs the rule reads
-- (interactions, traits, needs, value, identifiers, customer, consents,
-- preferences, time). compiler_version: the segment.c version that
-- compiled it; NULL (a segment saved before this migration) or older is
-- compiled again by the next server that refreshes. filled_at: when the
-- first membership was computed (NULL: not yet; that first fill writes no
-- events).
ALTER TABLE crm.segments
    ADD COLUMN condition         text,
    ADD COLUMN params            text[],
    ADD COLUMN depends           text[],
    ADD COLUMN compiler_version  integer,
    ADD COLUMN filled_at         timestamptz,
    ADD COLUMN updated_at        timestamptz;

-- Current members. No foreign key to crm.customers: a customer row is
-- never deleted (erasure and merge are updates), and the key check would
-- lock the customer row against the refresher.
CREATE TABLE crm.segment_members (
    segment_id   uuid NOT NULL REFERENCES crm.segments (segment_id) ON DELETE CASCADE,
    customer_id  uuid NOT NULL,
    entered_at   timestamptz NOT NULL,
    PRIMARY KEY (segment_id, customer_id)
);

CREATE INDEX segment_members_customer_idx ON crm.segment_members (customer_id);

-- Past memberships: one row per ended period (a current period is its
-- crm.segment_members row). Erasure deletes a customer's rows.
CREATE TABLE crm.segment_history (
    segment_id   uuid NOT NULL REFERENCES crm.segments (segment_id) ON DELETE CASCADE,
    customer_id  uuid NOT NULL,
    entered_at   timestamptz NOT NULL,
    exited_at    timestamptz NOT NULL
);

CREATE INDEX segment_history_customer_idx ON crm.segment_history (customer_id, exited_at);
CREATE INDEX segment_history_segment_idx ON crm.segment_history (segment_id);

-- Where the refresher stands: its feed cursor (xid, seq, the same keyset
-- and visibility rule as the feed's readers), the last value run it diffed
-- and when it last re-evaluated the time-dependent segments. One row,
-- locked by the instance refreshing (and by the writers of memberships:
-- segment create, PATCH, delete). Starts at the migration.
CREATE TABLE crm.segment_refresh_state (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    feed_xid      xid8 NOT NULL,
    feed_seq      bigint NOT NULL,
    value_run_id  bigint NOT NULL,
    swept_at      timestamptz NOT NULL
);

INSERT INTO crm.segment_refresh_state (feed_xid, feed_seq, value_run_id, swept_at)
SELECT pg_current_xact_id(), 0, coalesce(max(run_id), 0), now()
  FROM crm.model_runs WHERE finished_at IS NOT NULL;

-- A webhook may be limited to the customers of one segment. A segment that
-- a webhook filters on cannot be deleted (409) until the webhook lets go.
ALTER TABLE crm.webhooks
    ADD COLUMN segment_id uuid REFERENCES crm.segments (segment_id) ON DELETE RESTRICT;
