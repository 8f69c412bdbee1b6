-- 001_foundation: customers, identifiers, traits, interactions, aggregates, merges.
--
-- Every table that holds customer data is keyed by customer_id so the schema
-- can later be distributed by it. Identity resolution and ingestion are SQL
-- functions so that each API call is one database round trip and runs in one
-- transaction (no partial writes).
--
-- The functions, triggers and views this migration created now live in
-- sql/functions/ (one current definition each, applied after the migrations
-- at every start); this file keeps its tables, indexes and data.

CREATE SCHEMA IF NOT EXISTS crm;

CREATE TABLE crm.customers (
    customer_id  uuid PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    merged_into  uuid REFERENCES crm.customers (customer_id),
    merged_at    timestamptz
);
CREATE INDEX customers_merged_into_idx ON crm.customers (merged_into) WHERE merged_into IS NOT NULL;

-- (kind, namespace, value) belongs to exactly one customer: the primary key
-- is what makes concurrent resolution produce one customer.
CREATE TABLE crm.identifiers (
    kind         text NOT NULL,
    namespace    text NOT NULL DEFAULT '',
    value        text NOT NULL,
    customer_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    source       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (kind, namespace, value)
);
CREATE INDEX identifiers_customer_idx ON crm.identifiers (customer_id);

-- One row per field; attributes are stored as 'attributes.<key>'.
CREATE TABLE crm.traits (
    customer_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    name         text NOT NULL,
    value        jsonb NOT NULL,
    source       text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (customer_id, name)
);

CREATE TABLE crm.interactions (
    interaction_id uuid PRIMARY KEY,
    customer_id    uuid NOT NULL REFERENCES crm.customers (customer_id),
    source         text NOT NULL,
    external_id    text NOT NULL,
    channel        text NOT NULL,
    type           text NOT NULL,
    occurred_at    timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    amount         numeric(18,4),
    currency       char(3),
    cost           numeric(18,4),
    tags           text[] NOT NULL DEFAULT '{}',
    payload        jsonb NOT NULL DEFAULT '{}',
    -- For unmerge: the customer the interaction was addressed to (the id
    -- given, or the one its identifiers resolved to) and those identifiers.
    origin_customer_id uuid NOT NULL,
    resolved_by    jsonb,
    UNIQUE (source, external_id)
);
CREATE INDEX interactions_timeline_idx
    ON crm.interactions (customer_id, occurred_at DESC, interaction_id DESC);

-- Running totals per customer, channel, type and currency ('' when none),
-- maintained in the ingest transaction so a profile read never scans the
-- timeline.
CREATE TABLE crm.interaction_stats (
    customer_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    channel      text NOT NULL,
    type         text NOT NULL,
    currency     text NOT NULL,
    n            bigint NOT NULL,
    amount       numeric NOT NULL,
    cost         numeric NOT NULL,
    first_at     timestamptz NOT NULL,
    last_at      timestamptz NOT NULL,
    PRIMARY KEY (customer_id, channel, type, currency)
);

-- Needs derived from interactions: every tag (reason for calling, product
-- use, interest) counted per customer with its latest occurrence. Declared
-- needs live in traits (attributes.interests) and are combined on read.
CREATE TABLE crm.customer_needs (
    customer_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    need         text NOT NULL,
    n            bigint NOT NULL,
    first_at     timestamptz NOT NULL,
    last_at      timestamptz NOT NULL,
    PRIMARY KEY (customer_id, need)
);
CREATE INDEX customer_needs_need_idx ON crm.customer_needs (need, last_at);

-- Every merge, with what unmerge needs to split it again: the absorbed
-- customer's members (itself and what it had absorbed), identifiers and
-- traits, and the survivor's traits, as they were just before.
CREATE TABLE crm.merges (
    merge_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    survivor_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    absorbed_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    actor        text NOT NULL,
    reason       text NOT NULL,
    trigger_identifiers jsonb NOT NULL,
    merged_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    absorbed_members     uuid[] NOT NULL,
    absorbed_identifiers jsonb NOT NULL,
    absorbed_traits      jsonb NOT NULL,
    survivor_traits      jsonb NOT NULL,
    absorbed_updated_at  timestamptz NOT NULL,
    survivor_updated_at  timestamptz NOT NULL,
    unmerged_at  timestamptz,
    unmerged_by  text,
    unmerge_reason text
);
CREATE INDEX merges_survivor_idx ON crm.merges (survivor_id);
CREATE INDEX merges_absorbed_idx ON crm.merges (absorbed_id);

-- Placeholder values that must never glue customers together ("null",
-- "anonymous", test@test.com, a shop's shared phone...). Matched on the
-- lower-cased normalised value; kind '*' blocks a value for every kind.
CREATE TABLE crm.blocked_identifiers (
    kind        text NOT NULL,
    value       text NOT NULL,
    reason      text NOT NULL,
    builtin     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (kind, value)
);
INSERT INTO crm.blocked_identifiers (kind, value, reason, builtin)
SELECT '*', v, 'placeholder value', true
  FROM unnest(ARRAY['null', 'none', 'nil', 'undefined', 'unknown', 'anonymous', 'n/a', 'na',
                    '-1', '0', 'test', 'guest', '00000000-0000-0000-0000-000000000000']) AS v
UNION ALL
SELECT 'email', v, 'placeholder email', true
  FROM unnest(ARRAY['test@test.com', 'test@example.com', 'example@example.com', 'a@a.com',
                    'none@none.com', 'null@null.com', 'noemail@noemail.com', 'no@email.com',
                    'email@email.com', 'noreply@noreply.com', 'unknown@unknown.com']) AS v
UNION ALL
SELECT 'phone', v, 'placeholder phone', true
  FROM unnest(ARRAY['+10000000000', '+11111111111', '+12345678900', '+1234567890',
                    '+123456789', '+99999999999']) AS v;

-- How many identifiers of a kind one customer may hold (external: per
-- namespace), and which kinds are trusted most when they disagree.
CREATE TABLE crm.identifier_limits (
    kind              text PRIMARY KEY,
    max_per_customer  integer NOT NULL CHECK (max_per_customer >= 1),
    priority          integer NOT NULL  -- 1 = most trusted
);
INSERT INTO crm.identifier_limits VALUES
    ('external', 1, 1), ('loyalty_card', 2, 2), ('email', 5, 3), ('phone', 3, 4), ('device', 20, 5);

-- Requests that would have broken a limit: recorded instead of merged.
CREATE TABLE crm.identity_conflicts (
    conflict_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    source        text NOT NULL,
    reason        text NOT NULL,
    customer_ids  uuid[] NOT NULL,
    identifiers   jsonb NOT NULL,
    detail        jsonb NOT NULL
);
CREATE INDEX identity_conflicts_customers_idx ON crm.identity_conflicts USING gin (customer_ids);
