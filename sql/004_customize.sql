-- 004_customize: customise the relationship. Preferences per customer
-- (channels, language, contact frequency cap, quiet hours, categories,
-- delivery, free-form keys) with source and time per field; consents per
-- purpose and channel as an append-only history; the contact decision that
-- combines them; moments (birthdays, first-purchase anniversaries, warranty
-- expiries); and the data-subject rights: export and erasure.
-- Definitions and choices are documented in docs/customize.md.
--
-- The functions, triggers and views this migration created now live in
-- sql/functions/ (one current definition each, applied after the migrations
-- at every start); this file keeps its tables, indexes and data.

ALTER TABLE crm.customers ADD COLUMN erased_at timestamptz;

-- One row per field; the free-form keys are stored as 'custom.<key>'.
CREATE TABLE crm.preferences (
    customer_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    name         text NOT NULL,
    value        jsonb NOT NULL,
    source       text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (customer_id, name)
);

-- Append-only: a consent or withdrawal is a new row, never an update. The
-- current state of (purpose, channel) is its latest row by occurred_at.
CREATE TABLE crm.consent_events (
    event_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    purpose      text NOT NULL CHECK (purpose IN ('marketing', 'service', 'profiling',
                                                  'partner_sharing')),
    channel      text NOT NULL,
    status       text NOT NULL CHECK (status IN ('granted', 'withdrawn')),
    source       text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- the customer it was recorded for, so an unmerge can give it back
    origin_customer_id uuid NOT NULL
);
CREATE INDEX consent_events_state_idx
    ON crm.consent_events (customer_id, purpose, channel, occurred_at DESC, event_id DESC);

-- Moments: warranty expiries are found by a range scan on the text date.
CREATE INDEX interactions_warranty_idx ON crm.interactions ((payload->>'warranty_until'))
    WHERE type = 'purchase' AND payload ? 'warranty_until';
CREATE INDEX traits_birthday_idx ON crm.traits (customer_id) WHERE name = 'birthday';

-- Merges (crm.merge_into records each one in crm.merges) carry the
-- preferences (newest value per field wins, as traits) and the consent
-- history (moved as is) to the survivor. The preferences of both sides are
-- kept as they were, so that an unmerge (crm.unmerge sets unmerged_at) can
-- give them back, with the consent events recorded for the absorbed side.
CREATE TABLE crm.merge_preferences (
    merge_id              bigint PRIMARY KEY REFERENCES crm.merges (merge_id),
    absorbed_preferences  jsonb NOT NULL,
    survivor_preferences  jsonb NOT NULL
);
