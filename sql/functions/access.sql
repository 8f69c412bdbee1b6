-- access: API keys (authentication, creation, revocation, the bootstrap admin
-- key) and the audit log of personal-data reads and key management.
--
-- Applied after the migrations at every start, inside the migration
-- transaction, in the order of meson.build's `functions` list: every
-- statement must be idempotent (CREATE OR REPLACE FUNCTION; DROP ... IF
-- EXISTS first when a signature or return type changes; triggers and views
-- through crm.define_trigger and crm.define_view, core.sql). One current
-- definition per object.

-- The key's identity when the secret matches and it is not revoked.
CREATE OR REPLACE FUNCTION crm.authenticate(p_key_id uuid, p_key text) RETURNS jsonb
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
CREATE OR REPLACE FUNCTION crm.bootstrap_admin(p_key_id uuid, p_key text) RETURNS boolean
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

CREATE OR REPLACE FUNCTION crm.audit(p_key uuid, p_role text, p_action text, p_customer uuid,
                          p_detail jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO crm.audit_log (key_id, role, action, customer_id, detail)
    VALUES (p_key, p_role, p_action, p_customer, p_detail)
$$;

-- The audit row of a read. A read's transaction writes nothing else, so it
-- commits asynchronously: no WAL flush per read (a crash of PostgreSQL may
-- lose the last few hundred milliseconds of read audit rows, never data).
CREATE OR REPLACE FUNCTION crm.audit_read(p_key uuid, p_role text, p_action text, p_customer uuid)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM crm.audit(p_key, p_role, p_action, p_customer, NULL);
END $$;

CREATE OR REPLACE FUNCTION crm.create_key(p_key_id uuid, p_key text, p_name text, p_role text,
                               p_namespace text, p_by uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.api_keys (key_id, name, role, namespace, key_hash, created_by)
    VALUES (p_key_id, p_name, p_role, p_namespace, sha256(convert_to(p_key, 'UTF8')), p_by);
    PERFORM crm.audit(p_by, 'admin', 'key.create', NULL,
                      jsonb_build_object('key_id', p_key_id, 'role', p_role));
    RETURN (SELECT crm.key_doc(k) FROM crm.api_keys k WHERE key_id = p_key_id);
END $$;

CREATE OR REPLACE FUNCTION crm.key_doc(k crm.api_keys) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_strip_nulls(jsonb_build_object(
                'key_id', k.key_id, 'name', k.name, 'role', k.role, 'namespace', k.namespace,
                'created_at', crm.ts(k.created_at), 'created_by', k.created_by,
                'revoked_at', crm.ts(k.revoked_at)))
    );
END $$;

CREATE OR REPLACE FUNCTION crm.revoke_key(p_key_id uuid, p_by uuid) RETURNS jsonb
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

-- Read-audit rows, batched by the server: p_rows is a JSON array of
-- {at, key_id, role, action, customer_id}. Returns the number written.
CREATE OR REPLACE FUNCTION crm.audit_reads(p_rows jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO crm.audit_log (at, key_id, role, action, customer_id)
    SELECT r.at, r.key_id, r.role, r.action, r.customer_id
      FROM jsonb_to_recordset(p_rows)
           AS r(at timestamptz, key_id uuid, role text, action text, customer_id uuid);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN to_jsonb(n);
END $$;
