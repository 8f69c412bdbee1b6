-- 013_moment_events: moments (birthdays, first-purchase anniversaries,
-- warranty expiries) become `moment.due` events in the change feed
-- (crm.events), written by a daily run inside the server, once per moment
-- whatever the number of instances or runs. docs/customize.md ("Moments as
-- events"); the functions are in sql/functions/customize.sql.

-- Per kind: the consent purpose that must cover the customer (on at least
-- one channel) for the event to be written, and how many days before the
-- moment it is due (a warranty's expiry is announced 30 days ahead). Data,
-- not settings, so that every instance runs with the same values; change
-- them with UPDATE.
CREATE TABLE crm.moment_kinds (
    kind       text PRIMARY KEY CHECK (kind IN ('birthday', 'anniversary', 'warranty')),
    purpose    text NOT NULL CHECK (purpose IN ('marketing', 'service', 'profiling',
                                                'partner_sharing')),
    lead_days  integer NOT NULL CHECK (lead_days BETWEEN 0 AND 366)
);

INSERT INTO crm.moment_kinds (kind, purpose, lead_days) VALUES
    ('birthday', 'marketing', 0),
    ('anniversary', 'marketing', 0),
    ('warranty', 'service', 30);

-- The ledger: one row per moment whose event was written, so that it is
-- written once. subject_id: the customer for a birthday or an anniversary,
-- the purchase (interaction id) for a warranty, whose customer may change
-- with a merge. Rows of customers without consent are not written (they
-- fire if consent comes while their day is still being run). Erasure
-- deletes a customer's rows; rows whose moment is more than 400 days old
-- are purged by the daily run (no run can reach them any more).
CREATE TABLE crm.moment_ledger (
    kind         text NOT NULL,
    subject_id   uuid NOT NULL,
    moment_date  date NOT NULL,
    customer_id  uuid NOT NULL,
    run_day      date NOT NULL,
    fired_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (kind, subject_id, moment_date)
);

CREATE INDEX moment_ledger_customer_idx ON crm.moment_ledger (customer_id);

-- Where the scheduled run stands: the last day it ran. One row, locked by
-- the instance running (FOR UPDATE SKIP LOCKED: the others skip). NULL:
-- never run (the first run does not catch up).
CREATE TABLE crm.moments_state (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_day  date
);

INSERT INTO crm.moments_state (last_day) VALUES (NULL);
