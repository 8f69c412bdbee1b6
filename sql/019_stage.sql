-- 019_stage: the journey stage of every customer (issue 16 part 3,
-- docs/stage.md). crm.customer_stage holds the current stage of each
-- customer that has ever bought (a customer without a row is a prospect)
-- with what it was decided from: first and last purchase (copied from
-- crm.interaction_stats), the churn risk of the last live value run
-- (1 - p_alive, cleared by a purchase), and due_at, the earliest time the
-- stage may change by time alone (the sweep's index). crm.stage_history
-- keeps every change: customer, from, to, at, reason. The thresholds are
-- value settings (GET/PATCH /v1/settings/value); crm.stage_sweep_state is
-- the sweep's one row (its lock, its last run, the thresholds it used).

CREATE TABLE crm.customer_stage (
    customer_id        uuid PRIMARY KEY,
    stage              text NOT NULL
                       CHECK (stage IN ('prospect', 'onboarding', 'active', 'at_risk', 'lapsed', 'won_back')),
    since              timestamptz NOT NULL,
    first_purchase_at  timestamptz,
    last_purchase_at   timestamptz,
    churn              double precision,
    due_at             timestamptz
);
CREATE INDEX customer_stage_due_idx ON crm.customer_stage (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX customer_stage_stage_idx ON crm.customer_stage (stage);

CREATE TABLE crm.stage_history (
    customer_id  uuid NOT NULL,
    from_stage   text NOT NULL
                 CHECK (from_stage IN ('prospect', 'onboarding', 'active', 'at_risk', 'lapsed', 'won_back')),
    to_stage     text NOT NULL
                 CHECK (to_stage IN ('prospect', 'onboarding', 'active', 'at_risk', 'lapsed', 'won_back')),
    at           timestamptz NOT NULL,
    reason       text NOT NULL
                 CHECK (reason IN ('purchase', 'sweep', 'value_run', 'merge', 'unmerge'))
);
CREATE INDEX stage_history_customer_idx ON crm.stage_history (customer_id, at);
CREATE INDEX stage_history_at_idx ON crm.stage_history (at);

CREATE TABLE crm.stage_sweep_state (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_at      timestamptz,
    thresholds   jsonb
);
INSERT INTO crm.stage_sweep_state DEFAULT VALUES;

INSERT INTO crm.settings (key, value) VALUES
    ('stage_onboarding_days', '30'),
    ('stage_at_risk_days', '90'),
    ('stage_at_risk_churn', '0.5'),
    ('stage_lapsed_days', '180'),
    ('stage_won_back_days', '60'),
    ('stage_during_hours', '24')
ON CONFLICT (key) DO NOTHING;

-- Customers who bought before this release: a row with their purchases,
-- as prospects; the first sweep (thresholds never used: everyone) decides
-- their stage and records the change with reason sweep.
INSERT INTO crm.customer_stage (customer_id, stage, since, first_purchase_at, last_purchase_at,
                                due_at)
SELECT s.customer_id, 'prospect', c.created_at, min(s.first_at), max(s.last_at), now()
  FROM crm.interaction_stats s JOIN crm.customers c ON c.customer_id = s.customer_id
 WHERE s.type = 'purchase' AND c.merged_into IS NULL AND c.erased_at IS NULL
 GROUP BY s.customer_id, c.created_at;
