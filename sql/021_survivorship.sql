-- 021_survivorship: every source's value of each trait, and the rules that
-- decide which of them is the trait (issue 18, "Survivorship").
--
-- crm.traits keeps one row per (customer, name): the winning value, so every
-- reader stays as it was. crm.trait_values keeps, per source, the value that
-- source last gave, since when (first_seen), when it last gave it
-- (last_seen) and how many times in a row (times_seen). The functions in
-- sql/functions/survivorship.sql pick the winner by the rule of the trait's
-- name in crm.survivorship_rules (trait '*': the default; no row at all:
-- most_recent, the behaviour before this migration).

CREATE TABLE crm.trait_values (
    customer_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    name         text NOT NULL,
    source       text NOT NULL,
    value        jsonb NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    times_seen   integer NOT NULL DEFAULT 1,
    PRIMARY KEY (customer_id, name, source)
);

-- The rule names are written once in C (src/survivorship.c RULES;
-- tests/unit/test_enums.c compares this CHECK with them).
CREATE TABLE crm.survivorship_rules (
    trait        text PRIMARY KEY,
    rule         text NOT NULL CHECK (rule IN ('most_recent', 'source_priority', 'most_frequent', 'first_seen')),
    sources      text[] NOT NULL DEFAULT '{}',
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((rule = 'source_priority') = (cardinality(sources) > 0))
);

-- What an unmerge needs to give each side its source values back: both
-- sides' crm.trait_values rows as they were just before the merge (as
-- crm.merge_preferences does for preferences).
CREATE TABLE crm.merge_trait_values (
    merge_id         bigint PRIMARY KEY REFERENCES crm.merges (merge_id),
    absorbed_values  jsonb NOT NULL,
    survivor_values  jsonb NOT NULL
);

-- Every trait written before this migration is its source's value.
INSERT INTO crm.trait_values (customer_id, name, source, value, first_seen, last_seen, times_seen)
SELECT customer_id, name, source, value, updated_at, updated_at, 1 FROM crm.traits;
