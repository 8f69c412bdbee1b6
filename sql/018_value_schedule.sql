-- 018_value_schedule: value runs on a schedule inside the server (issue 18).
-- One row: the period an instance was started with (--value-schedule), when
-- the next run is due, and who claimed the last one. An instance claims a
-- due run by moving next_at under the row lock (crm.value_schedule_claim),
-- so one instance runs it whatever the number of instances; NULL period:
-- no instance schedules runs.
CREATE TABLE crm.value_schedule (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    period_s    integer CHECK (period_s > 0),
    next_at     timestamptz,
    claimed_by  text,
    claimed_at  timestamptz
);
INSERT INTO crm.value_schedule DEFAULT VALUES;
