-- 003_access: API keys with roles, and the audit log of personal-data reads
-- and key management. Keys are stored as SHA-256 hashes only; the secret is
-- shown once, when the key is created.
--
-- The functions, triggers and views this migration created now live in
-- sql/functions/ (one current definition each, applied after the migrations
-- at every start); this file keeps its tables, indexes and data.

CREATE TABLE crm.api_keys (
    key_id      uuid PRIMARY KEY,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('front_office', 'call_center', 'marketing',
                                              'partner', 'admin')),
    namespace   text,             -- partner keys: their external-id namespace
    key_hash    bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by  uuid,
    revoked_at  timestamptz,
    CHECK ((role = 'partner') = (namespace IS NOT NULL))
);

CREATE TABLE crm.audit_log (
    audit_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    key_id       uuid,
    role         text,
    action       text NOT NULL,
    customer_id  uuid,
    detail       jsonb
);
CREATE INDEX audit_log_customer_idx ON crm.audit_log (customer_id, at);
CREATE INDEX audit_log_key_idx ON crm.audit_log (key_id, at);
