-- 002_value: differentiate customers by value. Historic value, RFM scores,
-- predictive CLV (BG/NBD + Gamma-Gamma, fitted in C), value tiers, saved
-- segments and the settings that drive them. Set-based work lives here; the
-- model fit lives in src/clv.c and src/value.c.
--
-- The functions, triggers and views this migration created now live in
-- sql/functions/ (one current definition each, applied after the migrations
-- at every start); this file keeps its tables, indexes and data.

CREATE TABLE crm.settings (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO crm.settings (key, value) VALUES
    ('base_currency', '"EUR"'),          -- only amounts in this currency count as value
    ('clv_horizon_weeks', '52'),         -- predictive CLV horizon
    ('clv_margin', '1.0'),               -- share of revenue that is margin, for CLV
    ('tier_mvc_fraction', '0.10'),       -- top share of buyers by CLV: most valuable
    ('tier_mgc_fraction', '0.30'),       -- next share by CLV with P(alive) >= tier_mgc_min_p_alive
    ('tier_mgc_min_p_alive', '0.5'),
    ('tier_bz_return_ratio', '0.5');     -- returns/revenue at or above this: below zero

-- One row per value recompute.
CREATE TABLE crm.model_runs (
    run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model           text NOT NULL,
    as_of           timestamptz NOT NULL,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    customers       bigint,
    buyers          bigint,
    params          jsonb,
    log_likelihood  double precision,
    fit_seconds     double precision,
    customer_equity numeric
);

CREATE TABLE crm.customer_value (
    customer_id        uuid PRIMARY KEY REFERENCES crm.customers (customer_id),
    run_id             bigint NOT NULL REFERENCES crm.model_runs (run_id),
    revenue            numeric NOT NULL,
    returns            numeric NOT NULL,
    cost               numeric NOT NULL,
    margin             numeric NOT NULL,
    purchase_days      integer NOT NULL,  -- distinct days with a purchase
    first_purchase_at  timestamptz,
    last_purchase_at   timestamptz,
    frequency          integer,           -- BG/NBD x: repeat purchase days
    recency_weeks      double precision,  -- t_x
    age_weeks          double precision,  -- T
    avg_repeat_spend   double precision,  -- zbar
    p_alive            double precision,
    expected_purchases double precision,  -- over clv_horizon_weeks
    expected_spend     double precision,  -- Gamma-Gamma E[Z]
    clv                numeric NOT NULL,  -- predictive, over the horizon
    rfm_r              smallint,
    rfm_f              smallint,
    rfm_m              smallint,
    tier               text NOT NULL,
    computed_at        timestamptz NOT NULL
);
CREATE INDEX customer_value_clv_idx ON crm.customer_value (clv DESC);
CREATE INDEX customer_value_tier_idx ON crm.customer_value (tier, clv DESC);

-- CLV per customer per run, for customer equity at a past date (ROC).
CREATE TABLE crm.value_snapshots (
    run_id       bigint NOT NULL REFERENCES crm.model_runs (run_id),
    customer_id  uuid NOT NULL,
    clv          numeric NOT NULL,
    PRIMARY KEY (run_id, customer_id)
);

-- Saved segments: a name and a rule (see docs/segments.md), compiled to SQL
-- by the server on every use.
CREATE TABLE crm.segments (
    segment_id   uuid PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    description  text,
    rule         jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
