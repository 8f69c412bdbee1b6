-- 020_next_best_action: the rule table behind the next best action of the
-- agent's summary (GET /v1/customers/{id}/summary, docs/summary.md) and the
-- thresholds its conditions read.
--
-- A rule is a priority (lower first), a unique name, the conditions that
-- must all hold (a closed vocabulary, written once in src/nba.c as
-- NBA_CONDITIONS; an empty list always holds), the action to recommend and
-- the reason shown to the agent; both may name facts as {placeholders}
-- (src/nba.c). The first rule whose conditions hold is the recommendation.
-- Admin replaces the whole list (PUT /v1/settings/next-best-action); the
-- server checks it before it reaches this table.

CREATE TABLE crm.nba_rules (
    priority    integer PRIMARY KEY CHECK (priority >= 1),
    name        text NOT NULL UNIQUE,
    conditions  text[] NOT NULL
                CHECK (conditions <@ ARRAY['open_complaint_case', 'open_case', 'high_value',
                                           'at_risk', 'detractor', 'warranty_expiring',
                                           'has_need', 'lapsed', 'onboarding']::text[]),
    action      text NOT NULL,
    reason      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

INSERT INTO crm.nba_rules (priority, name, conditions, action, reason) VALUES
    (1, 'open_complaint', '{open_complaint_case}', 'resolve_case',
     'An open complaint case ({case_subject}) must be resolved first'),
    (2, 'valuable_at_risk', '{high_value,at_risk}', 'retention_offer',
     'High-value customer (tier {tier}, CLV {clv}) at risk of churning (risk {churn_risk})'),
    (3, 'valuable_lapsed', '{high_value,lapsed}', 'win_back_offer',
     'High-value customer (tier {tier}, CLV {clv}) has lapsed: no purchase for a long time'),
    (4, 'detractor', '{detractor}', 'service_recovery_call',
     'Last NPS score was {nps} (detractor)'),
    (5, 'warranty_expiring', '{warranty_expiring}', 'warranty_extension_offer',
     'A warranty expires on {warranty_date}'),
    (6, 'onboarding', '{onboarding}', 'onboarding_check_in',
     'A new customer (stage {stage}): make sure the first purchase works out'),
    (7, 'top_need', '{has_need}', 'offer_{need}',
     'The customer''s top need is {need}'),
    (8, 'no_action', '{}', 'no_action', 'No rule applies');

-- The thresholds of the conditions high_value (CLV above this, in the base
-- currency; the tiers mvc and mgc count as high value whatever their CLV),
-- at_risk (churn risk above this) and warranty_expiring (a warranty ending
-- within this many days, today included). One row. Not in crm.settings: a
-- change there makes every cached profile stale, and these are not in the
-- profile.
CREATE TABLE crm.nba_thresholds (
    one                 boolean PRIMARY KEY DEFAULT true CHECK (one),
    high_value_clv      numeric NOT NULL CHECK (high_value_clv >= 0),
    at_risk_churn_risk  double precision NOT NULL CHECK (at_risk_churn_risk BETWEEN 0 AND 1),
    warranty_days       integer NOT NULL CHECK (warranty_days BETWEEN 0 AND 366),
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO crm.nba_thresholds (high_value_clv, at_risk_churn_risk, warranty_days)
VALUES (1000, 0.5, 30);
