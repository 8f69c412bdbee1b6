-- 003_access: API keys with roles, and the audit log of personal-data reads
-- and key management. Keys are stored as SHA-256 hashes only; the secret is
-- shown once, when the key is created.

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

-- The key's identity when the secret matches and it is not revoked.
CREATE FUNCTION crm.authenticate(p_key_id uuid, p_key text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_strip_nulls(jsonb_build_object('key_id', key_id, 'role', role,
                                                        'namespace', namespace, 'name', name))
              FROM crm.api_keys
             WHERE key_id = p_key_id AND key_hash = sha256(convert_to(p_key, 'UTF8'))
               AND revoked_at IS NULL
    );
END $$;

-- First start: install the bootstrap admin key unless an admin key exists.
CREATE FUNCTION crm.bootstrap_admin(p_key_id uuid, p_key text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7412093003);
    IF EXISTS (SELECT 1 FROM crm.api_keys WHERE role = 'admin' AND revoked_at IS NULL) THEN
        RETURN false;
    END IF;
    -- A revoked bootstrap key stays revoked: its id cannot be installed again.
    INSERT INTO crm.api_keys (key_id, name, role, key_hash)
    VALUES (p_key_id, 'bootstrap admin', 'admin', sha256(convert_to(p_key, 'UTF8')))
    ON CONFLICT (key_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO crm.audit_log (key_id, role, action, detail)
    VALUES (p_key_id, 'admin', 'key.bootstrap', '{}');
    RETURN true;
END $$;

CREATE FUNCTION crm.audit(p_key uuid, p_role text, p_action text, p_customer uuid,
                          p_detail jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO crm.audit_log (key_id, role, action, customer_id, detail)
    VALUES (p_key, p_role, p_action, p_customer, p_detail)
$$;

-- The audit row of a read. A read's transaction writes nothing else, so it
-- commits asynchronously: no WAL flush per read (a crash of PostgreSQL may
-- lose the last few hundred milliseconds of read audit rows, never data).
CREATE FUNCTION crm.audit_read(p_key uuid, p_role text, p_action text, p_customer uuid)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM crm.audit(p_key, p_role, p_action, p_customer, NULL);
END $$;

-- Profile read with its audit row, in one round trip.
CREATE FUNCTION crm.read_profile(p_id uuid, p_key uuid, p_role text, p_action text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    doc jsonb := crm.profile(p_id);
BEGIN
    IF doc IS NOT NULL THEN
        PERFORM crm.audit_read(p_key, p_role, p_action, (doc->>'customer_id')::uuid);
    END IF;
    RETURN doc;
END $$;

CREATE FUNCTION crm.create_key(p_key_id uuid, p_key text, p_name text, p_role text,
                               p_namespace text, p_by uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.api_keys (key_id, name, role, namespace, key_hash, created_by)
    VALUES (p_key_id, p_name, p_role, p_namespace, sha256(convert_to(p_key, 'UTF8')), p_by);
    PERFORM crm.audit(p_by, 'admin', 'key.create', NULL,
                      jsonb_build_object('key_id', p_key_id, 'role', p_role));
    RETURN (SELECT crm.key_doc(k) FROM crm.api_keys k WHERE key_id = p_key_id);
END $$;

CREATE FUNCTION crm.key_doc(k crm.api_keys) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_strip_nulls(jsonb_build_object(
                'key_id', k.key_id, 'name', k.name, 'role', k.role, 'namespace', k.namespace,
                'created_at', crm.ts(k.created_at), 'created_by', k.created_by,
                'revoked_at', crm.ts(k.revoked_at)))
    );
END $$;

CREATE FUNCTION crm.revoke_key(p_key_id uuid, p_by uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    doc jsonb;
BEGIN
    UPDATE crm.api_keys SET revoked_at = coalesce(revoked_at, clock_timestamp())
     WHERE key_id = p_key_id
    RETURNING crm.key_doc(api_keys) INTO doc;
    IF doc IS NOT NULL THEN
        PERFORM crm.audit(p_by, 'admin', 'key.revoke', NULL, jsonb_build_object('key_id', p_key_id));
    END IF;
    RETURN doc;
END $$;
