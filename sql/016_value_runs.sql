-- 016_value_runs: every value run kept as a snapshot, only a current run
-- updates the live values, a fit that failed is recorded and never applied,
-- and a run carries the settings it used (issue 18).
--
-- crm.model_runs: status (running while the run's transaction is open,
-- succeeded, failed), live (a run without as_of: it replaces the live
-- values in crm.customer_value; a dated run only writes its snapshot),
-- dated (as_of was given: a live dated run is a back-test, and the
-- profile shows its historic value rather than today's),
-- settings (every value setting the run read), error and diagnostics of a
-- failed run. crm.value_snapshots keeps the run's value fields per customer
-- (it held only CLV), pruned after value_snapshot_retention_days.

ALTER TABLE crm.model_runs
    ADD COLUMN status      text NOT NULL DEFAULT 'succeeded'
                           CHECK (status IN ('running', 'succeeded', 'failed')),
    ADD COLUMN live        boolean NOT NULL DEFAULT true,
    ADD COLUMN dated       boolean NOT NULL DEFAULT false,
    ADD COLUMN settings    jsonb,
    ADD COLUMN error       text,
    ADD COLUMN diagnostics jsonb;

-- Runs of earlier releases: finished ones succeeded (and were applied).
UPDATE crm.model_runs SET status = 'failed' WHERE finished_at IS NULL;
ALTER TABLE crm.model_runs ALTER COLUMN status SET DEFAULT 'running';

ALTER TABLE crm.value_snapshots
    ADD COLUMN tier               text,
    ADD COLUMN revenue            numeric,
    ADD COLUMN returns            numeric,
    ADD COLUMN cost               numeric,
    ADD COLUMN margin             numeric,
    ADD COLUMN purchase_days      integer,
    ADD COLUMN p_alive            double precision,
    ADD COLUMN expected_purchases double precision,
    ADD COLUMN expected_spend     double precision,
    ADD COLUMN rfm_r              smallint,
    ADD COLUMN rfm_f              smallint,
    ADD COLUMN rfm_m              smallint;

INSERT INTO crm.settings (key, value) VALUES
    ('value_snapshot_retention_days', '400')  -- a year and a season of ROC periods
ON CONFLICT (key) DO NOTHING;
