-- 010_activation: hand customers to the systems that act on them.
--
-- A durable change feed: every business change writes its event in the
-- transaction of the change, by AFTER triggers on the tables (no crm.*
-- function body is touched), into crm.events; an interaction is its own
-- event (crm.interactions carries its feed position), so ingest writes no
-- second copy. The feed's order is (xid, seq): the writing transaction's id,
-- then a global sequence. Readers only see events of transactions older
-- than the oldest one still running (pg_snapshot_xmin), so an event can never
-- appear behind a cursor a reader already moved past. docs/activation.md.
--
-- Webhooks: endpoints (crm.webhooks), one delivery row per (endpoint,
-- event) made by a fan-out that follows the feed (one instance at a time:
-- a row lock on crm.activation_state), claimed by delivery workers of any
-- instance with leases (FOR UPDATE SKIP LOCKED), in order per customer.
--
-- This file holds the tables, sequences, indexes and the state row; the
-- trigger functions, the triggers and the feed and delivery functions are
-- in sql/functions/activation.sql.

CREATE SEQUENCE crm.event_seq;

CREATE TABLE crm.events (
    xid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    seq          bigint NOT NULL DEFAULT nextval('crm.event_seq'),
    type         text NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    customer_id  uuid NOT NULL,
    data         jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (xid, seq)
);

CREATE INDEX events_customer_idx ON crm.events (customer_id);

-- For the retention purge only: rows arrive in time order, so a BRIN index
-- (a few pages, next to nothing per insert) finds the old ones.
CREATE INDEX events_occurred_idx ON crm.events USING brin (occurred_at);

-- One traits.changed / preferences.changed event per customer and
-- transaction: later changes of the same transaction are merged into it.
CREATE UNIQUE INDEX events_field_changes_idx ON crm.events (xid, customer_id, type)
    WHERE type IN ('traits.changed', 'preferences.changed');


-- Interactions are events as they are: their feed position is assigned on
-- insert (no table rewrite: rows stored before this migration have none and
-- are not in the feed).
ALTER TABLE crm.interactions ADD COLUMN event_xid xid8, ADD COLUMN event_seq bigint;

ALTER TABLE crm.interactions ALTER COLUMN event_xid SET DEFAULT pg_current_xact_id(),
                             ALTER COLUMN event_seq SET DEFAULT nextval('crm.event_seq');

CREATE INDEX interactions_feed_idx ON crm.interactions (event_xid, event_seq);


-- ---- webhooks ---------------------------------------------------------------

-- The signing secret is stored as given to the client (whsec_ + base64):
-- the server must read it back to sign. See docs/activation.md.
CREATE TABLE crm.webhooks (
    webhook_id   uuid PRIMARY KEY,
    url          text NOT NULL,
    event_types  text[],             -- NULL: every type
    enabled      boolean NOT NULL DEFAULT true,
    description  text NOT NULL DEFAULT '',
    secret       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE crm.webhook_deliveries (
    delivery_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id       uuid NOT NULL REFERENCES crm.webhooks (webhook_id) ON DELETE CASCADE,
    event_xid        xid8 NOT NULL,
    event_seq        bigint NOT NULL,
    event_type       text NOT NULL,
    event_at         timestamptz NOT NULL,
    customer_id      uuid NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_attempt_at  timestamptz,
    last_status      integer,
    last_error       text,
    delivered_at     timestamptz,
    lease_owner      text,
    lease_until      timestamptz,
    UNIQUE (webhook_id, event_xid, event_seq)
);

CREATE INDEX webhook_deliveries_due_idx ON crm.webhook_deliveries (next_attempt_at, delivery_id)
    WHERE status = 'pending';

CREATE INDEX webhook_deliveries_order_idx
    ON crm.webhook_deliveries (webhook_id, customer_id, event_xid, event_seq)
    WHERE status = 'pending';

CREATE INDEX webhook_deliveries_list_idx ON crm.webhook_deliveries (webhook_id, delivery_id DESC);


-- Where the fan-out stands in the feed: one row, locked by the instance
-- fanning out. Starts at the migration: no history is delivered.
CREATE TABLE crm.activation_state (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    fanout_xid  xid8 NOT NULL,
    fanout_seq  bigint NOT NULL
);

INSERT INTO crm.activation_state (fanout_xid, fanout_seq) VALUES (pg_current_xact_id(), 0);
