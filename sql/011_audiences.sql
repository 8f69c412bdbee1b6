-- 011_audiences: segments that audiences can use (docs/value.md, "Audiences").
-- A segment's members or export filtered by the contact decision for a
-- purpose and channel, each with the address to use on that channel, and
-- one audit row per export (or per members page carrying contact data)
-- with the number of customers it gave out.

-- Whether crm.contact_decision (004) allows contacting p_customer for
-- p_purpose on p_channel at p_at: consent, then quiet hours, then the
-- frequency cap. It calls the decision itself so that an audience can never
-- disagree with GET /v1/customers/{id}/contact-decision. The cost tells the
-- planner to test the segment's own conditions first.
CREATE FUNCTION crm.contact_allowed(p_customer uuid, p_purpose text, p_channel text,
                                    p_at timestamptz) RETURNS boolean
LANGUAGE sql STABLE COST 1000 AS $$
    SELECT coalesce((crm.contact_decision(p_customer, p_purpose, p_channel, p_at)
                     ->> 'allowed')::boolean, false)
$$;

-- The identifier of p_kind to use for p_customer: the most recently added
-- one (NULL when it has none). Segment members are survivors, and a merge
-- moves the absorbed side's identifiers to the survivor.
CREATE FUNCTION crm.customer_address(p_customer uuid, p_kind text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT i.value FROM crm.identifiers i
     WHERE i.customer_id = p_customer AND i.kind = p_kind
     ORDER BY i.created_at DESC, i.value
     LIMIT 1
$$;

-- The audit row of a segment export (or members page): who, which segment,
-- purpose and channel (null without), the fields asked for, and how many
-- customers were given out so far. Returns the row's id.
CREATE FUNCTION crm.audit_segment_export(p_key uuid, p_role text, p_segment uuid,
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
CREATE FUNCTION crm.audit_segment_export_add(p_audit_id bigint, p_count bigint,
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
