-- audiences: segment members as audiences (the contact-decision filter, the
-- address to use, the export audit rows) and what a partner key may read
-- (docs/value.md "Audiences", docs/customize.md "Partner sharing").
-- Tables and columns: sql/011_audiences.sql.

-- Whether crm.contact_decision (004) allows contacting p_customer for
-- p_purpose on p_channel at p_at: consent, then quiet hours, then the
-- frequency cap. It calls the decision itself so that an audience can never
-- disagree with GET /v1/customers/{id}/contact-decision. The cost tells the
-- planner to test the segment's own conditions first.
CREATE OR REPLACE FUNCTION crm.contact_allowed(p_customer uuid, p_purpose text, p_channel text,
                                               p_at timestamptz) RETURNS boolean
LANGUAGE sql STABLE COST 1000 AS $$
    SELECT coalesce((crm.contact_decision(p_customer, p_purpose, p_channel, p_at)
                     ->> 'allowed')::boolean, false)
$$;

-- The identifier of p_kind to use for p_customer: the most recently added
-- one (NULL when it has none). Segment members are survivors, and a merge
-- moves the absorbed side's identifiers to the survivor.
CREATE OR REPLACE FUNCTION crm.customer_address(p_customer uuid, p_kind text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT i.value FROM crm.identifiers i
     WHERE i.customer_id = p_customer AND i.kind = p_kind
     ORDER BY i.created_at DESC, i.value
     LIMIT 1
$$;

-- The audit row of a segment export (or members page): who, which segment,
-- purpose and channel (null without), the fields asked for, and how many
-- customers were given out so far. Returns the row's id.
CREATE OR REPLACE FUNCTION crm.audit_segment_export(p_key uuid, p_role text, p_segment uuid,
                                                    p_purpose text, p_channel text, p_fields jsonb,
                                                    p_via text, p_count bigint, p_complete boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    id bigint;
BEGIN
    INSERT INTO crm.audit_log (key_id, role, action, customer_id, detail)
    VALUES (p_key, p_role, 'segment.export', NULL,
            jsonb_build_object('segment_id', p_segment, 'purpose', p_purpose,
                               'channel', p_channel, 'fields', p_fields, 'via', p_via,
                               'count', p_count, 'complete', p_complete))
    RETURNING audit_id INTO id;
    RETURN jsonb_build_object('audit_id', id);
END $$;

-- An export streams page by page: each page's customers are added to its
-- row's count before the page is sent; p_complete marks the last page.
CREATE OR REPLACE FUNCTION crm.audit_segment_export_add(p_audit_id bigint, p_count bigint,
                                                        p_complete boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    doc jsonb;
BEGIN
    UPDATE crm.audit_log
       SET detail = detail || jsonb_build_object('count', (detail->>'count')::bigint + p_count,
                                                 'complete', p_complete)
     WHERE audit_id = p_audit_id AND action = 'segment.export'
    RETURNING detail INTO doc;
    IF doc IS NULL THEN
        RAISE EXCEPTION 'no segment export audit row %', p_audit_id;
    END IF;
    RETURN doc;
END $$;

-- crm.create_key (003) plus the partner key's shared fields (NULL: none),
-- in one transaction; the shared fields are audited with the key.
CREATE OR REPLACE FUNCTION crm.create_key_shared(p_key_id uuid, p_key text, p_name text, p_role text,
                                                 p_namespace text, p_by uuid, p_shared jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    doc jsonb := crm.create_key(p_key_id, p_key, p_name, p_role, p_namespace, p_by);
BEGIN
    IF p_shared IS NOT NULL THEN
        UPDATE crm.api_keys SET shared_fields = ARRAY(SELECT jsonb_array_elements_text(p_shared))
         WHERE key_id = p_key_id;
        PERFORM crm.audit(p_by, 'admin', 'key.shared_fields', NULL,
                          jsonb_build_object('key_id', p_key_id, 'shared_fields', p_shared));
        doc := doc || jsonb_build_object('shared_fields', p_shared);
    END IF;
    RETURN doc;
END $$;

-- Every field a partner may be allowed, by the audience field names.
CREATE OR REPLACE FUNCTION crm.partner_fields(p_customer uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'email', crm.customer_address(c.customer_id, 'email'),
        'phone', crm.customer_address(c.customer_id, 'phone'),
        'device', crm.customer_address(c.customer_id, 'device'),
        'first_name', (SELECT t.value #>> '{}' FROM crm.traits t
                        WHERE t.customer_id = c.customer_id AND t.name = 'first_name'),
        'last_name', (SELECT t.value #>> '{}' FROM crm.traits t
                       WHERE t.customer_id = c.customer_id AND t.name = 'last_name'),
        'birthday', (SELECT t.value #>> '{}' FROM crm.traits t
                      WHERE t.customer_id = c.customer_id AND t.name = 'birthday'),
        'value.clv', trim_scale(v.clv), 'value.tier', v.tier,
        'value.churn_risk', 1 - v.p_alive, 'value.p_alive', v.p_alive,
        'value.margin', trim_scale(v.margin),
        'value.rfm', CASE WHEN v.rfm_r IS NULL THEN NULL
                          ELSE v.rfm_r::text || v.rfm_f::text || v.rfm_m::text END)
      FROM crm.customers c LEFT JOIN crm.customer_value v ON v.customer_id = c.customer_id
     WHERE c.customer_id = p_customer
$$;

-- A partner key's read of a customer: the key's shared fields, only when
-- the customer (followed to its survivor, not erased) has an external id in
-- the key's namespace and partner_sharing consent covers channel 'partner'
-- now (granted for 'partner' or 'any', not withdrawn; docs/customize.md).
-- Anything else is NULL, as for an unknown customer. Audited.
CREATE OR REPLACE FUNCTION crm.partner_customer(p_id uuid, p_key uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    sid uuid := crm.survivor_of(p_id);
    k crm.api_keys%ROWTYPE;
    doc jsonb;
BEGIN
    SELECT * INTO k FROM crm.api_keys
     WHERE key_id = p_key AND role = 'partner' AND revoked_at IS NULL;
    IF sid IS NULL OR NOT FOUND OR coalesce(cardinality(k.shared_fields), 0) = 0
       OR crm.is_erased(sid) THEN
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM crm.identifiers
                    WHERE customer_id = sid AND kind = 'external' AND namespace = k.namespace) THEN
        RETURN NULL;
    END IF;
    IF crm.consent_reason(sid, 'partner_sharing', 'partner', now()) <> 'ok' THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_object_agg(f.key, f.value) INTO doc
      FROM jsonb_each(crm.partner_fields(sid)) AS f
     WHERE f.key = ANY (k.shared_fields);
    PERFORM crm.audit(p_key, 'partner', 'customer.partner_read', sid,
                      jsonb_build_object('namespace', k.namespace,
                                         'fields', to_jsonb(k.shared_fields)));
    RETURN jsonb_build_object('customer_id', sid) || coalesce(doc, '{}');
END $$;
