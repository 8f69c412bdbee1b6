-- 017_cases: cases, the call centre's unit of work (issue 16, part 1;
-- docs/cases.md). A case groups the interactions about one problem: opened
-- by a complaint (or by hand), about a purchase (an interaction), followed
-- by the interactions that carry its id; status open -> in_progress ->
-- resolved | closed, reopened back to open (counted).
--
-- The statuses and priorities are written once in C (src/cases.c); the
-- CHECKs below must list them in the same order (tests/unit/test_enums.c).
-- Which transitions are legal is src/cases.c's too: the server sends the
-- statuses a case may leave for the one asked (crm.case_patch).
--
-- origin_customer_id: the customer the case was opened for (the id in the
-- path, or the customer its opening interaction was addressed to), so that
-- an unmerge gives it back as it gives back interactions. subject and
-- assignee are the case's personal texts: erasure clears them and keeps the
-- rest (statuses, times, channel), so the KPIs still add up.
--
-- Interactions carry case_id as a nullable column, no foreign key: an
-- interaction without a case writes nothing more than before (a 21st column
-- fits the null bitmap the row has already, 3 bytes up to 24 columns: the
-- tuple stays 32 bytes of header), and no referential-integrity trigger
-- event is queued per inserted row. The ingest functions check the case
-- (sql/functions/ingest.sql, cases.sql). Adding a nullable column without a
-- default rewrites nothing.

CREATE TABLE crm.cases (
    case_id             uuid PRIMARY KEY,
    customer_id         uuid NOT NULL REFERENCES crm.customers (customer_id),
    origin_customer_id  uuid NOT NULL,
    status              text NOT NULL DEFAULT 'open'
                        CHECK (status IN ('open', 'in_progress', 'resolved', 'closed')),
    priority            text NOT NULL DEFAULT 'normal'
                        CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    channel             text NOT NULL,
    subject             text,
    assignee            text,
    source              text NOT NULL,
    purchase_id         uuid,           -- the purchase (an interaction) it is about
    opened_by           uuid,           -- the interaction that opened it, if one did
    opened_at           timestamptz NOT NULL,
    first_response_at   timestamptz,
    resolved_at         timestamptz,
    closed_at           timestamptz,
    reopen_count        integer NOT NULL DEFAULT 0,
    reopened_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- A customer's cases (the profile's open cases, the list, merges).
CREATE INDEX cases_customer_idx ON crm.cases (customer_id, opened_at DESC, case_id);
-- The KPIs: cases opened in a period.
CREATE INDEX cases_opened_idx ON crm.cases (opened_at);

ALTER TABLE crm.interactions ADD COLUMN case_id uuid;

-- A case's interactions; rows without a case never enter it.
CREATE INDEX interactions_case_idx ON crm.interactions (case_id, occurred_at, interaction_id)
    WHERE case_id IS NOT NULL;
