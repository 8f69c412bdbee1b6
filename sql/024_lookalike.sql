-- 024_lookalike: the cached look-alike fit of each segment (docs/lookalikes.md).
-- GET /v1/segments/{id}/lookalikes fits a logistic regression (members
-- against every other live customer, src/lookalike.c) when the segment has
-- no fit newer than the server's maximum age, or none since the segment
-- last changed, and keeps it here: when, on how many customers, its
-- held-out AUC, the needs chosen as indicator features and the model
-- (standardisation and coefficients). No personal data: one row per
-- segment, gone with the segment. The functions are in
-- sql/functions/lookalike.sql.
CREATE TABLE crm.lookalike_fits (
    segment_id    uuid PRIMARY KEY REFERENCES crm.segments (segment_id) ON DELETE CASCADE,
    fitted_at     timestamptz NOT NULL,
    n             integer NOT NULL CHECK (n >= 0),
    positives     integer NOT NULL CHECK (positives >= 0),
    held_out_n    integer NOT NULL CHECK (held_out_n >= 0),
    held_out_auc  double precision CHECK (held_out_auc BETWEEN 0 AND 1),
    fit_ms        integer NOT NULL CHECK (fit_ms >= 0),
    needs         text[] NOT NULL,
    model         jsonb NOT NULL
);
