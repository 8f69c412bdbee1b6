-- cases: the call centre's cases (sql/017_cases.sql, docs/cases.md): the
-- case document, opening, reading, changing and listing cases, what an
-- interaction does to the case it names (crm.case_follow, called by
-- crm.ingest), the case KPIs, and the triggers that carry cases through
-- merges and unmerges, keep the profile cache true and write the case
-- events of the change feed.
--
-- Applied after the migrations at every start, inside the migration
-- transaction, in the order of meson.build's `functions` list (after
-- profile.sql, whose crm.profile_stale_row the cache trigger uses): every
-- statement must be idempotent (CREATE OR REPLACE FUNCTION; DROP ... IF
-- EXISTS first when a signature or return type changes; triggers and views
-- through crm.define_trigger and crm.define_view, core.sql). One current
-- definition per object.
--
-- Which statuses may follow which is the server's (src/cases.c): a change
-- of status arrives with the statuses the case may be in for it.

-- ---- documents --------------------------------------------------------------

CREATE OR REPLACE FUNCTION crm.case_doc(c crm.cases) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'case_id', c.case_id, 'customer_id', c.customer_id, 'status', c.status,
        'priority', c.priority, 'channel', c.channel, 'subject', c.subject,
        'assignee', c.assignee, 'source', c.source, 'purchase_id', c.purchase_id,
        'opened_by', c.opened_by, 'opened_at', crm.ts(c.opened_at),
        'first_response_at', crm.ts(c.first_response_at),
        'resolved_at', crm.ts(c.resolved_at), 'closed_at', crm.ts(c.closed_at),
        'reopen_count', c.reopen_count, 'reopened_at', crm.ts(c.reopened_at),
        'created_at', crm.ts(c.created_at), 'updated_at', crm.ts(c.updated_at))
$$;

-- The case with the interactions that carry its id, oldest first.
CREATE OR REPLACE FUNCTION crm.case_full_doc(c crm.cases) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT crm.case_doc(c) || jsonb_build_object('interactions', coalesce(
        (SELECT jsonb_agg(jsonb_build_object(
                    'interaction_id', i.interaction_id, 'customer_id', i.customer_id,
                    'channel', i.channel, 'type', i.type,
                    'occurred_at', crm.ts(i.occurred_at))
                    ORDER BY i.occurred_at, i.interaction_id)
           FROM crm.interactions i WHERE i.case_id = c.case_id), '[]'))
$$;

-- The profile's cases section: the open cases (open or in_progress),
-- newest first, and how many cases the customer has had.
CREATE OR REPLACE FUNCTION crm.open_cases_doc(p_customer uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
                   'open', coalesce(jsonb_agg(crm.case_doc(c) ORDER BY c.opened_at DESC, c.case_id)
                                    FILTER (WHERE c.status IN ('open', 'in_progress')), '[]'),
                   'open_count', count(*) FILTER (WHERE c.status IN ('open', 'in_progress')),
                   'total', count(*))
          FROM crm.cases c WHERE c.customer_id = p_customer
    );
END $$;

-- ---- checks -----------------------------------------------------------------

-- True when the case belongs to p_customer (a survivor); the case row is
-- then locked until commit (the ingest that follows it may change it).
CREATE OR REPLACE FUNCTION crm.case_of_customer(p_case uuid, p_customer uuid) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM crm.cases WHERE case_id = p_case AND customer_id = p_customer
        FOR NO KEY UPDATE;
    RETURN FOUND;
END $$;

-- True when p_purchase is a purchase interaction of p_customer.
CREATE OR REPLACE FUNCTION crm.purchase_of(p_purchase uuid, p_customer uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM crm.interactions
                    WHERE interaction_id = p_purchase AND customer_id = p_customer
                      AND type = 'purchase')
$$;

-- ---- what an interaction does to a case -------------------------------------

-- Called by crm.ingest after it stored interaction p_interaction (of
-- customer p_customer, addressed to p_origin, occurred at p_at) naming or
-- opening case p_case, whose row it has locked (crm.case_of_customer):
--   open       a complaint without a case_id: a new case, opened at p_at
--              on the interaction's channel, opened_by the interaction;
--   complaint  a complaint naming a resolved or closed case, occurred after
--              it was resolved (or closed): the case is reopened (counted);
--   response   a company-side interaction (outbound_message, support_call):
--              first_response_at becomes p_at when p_at is at or after
--              opened_at, not after the case was resolved or closed, and
--              earlier than the first response known (order of arrival
--              does not matter);
--   follow     anything else: only linked (interactions.case_id).
CREATE OR REPLACE FUNCTION crm.case_follow(p_case uuid, p_role text, p_customer uuid,
                                           p_origin uuid, p_interaction uuid, p_channel text,
                                           p_source text, p_at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_role = 'open' THEN
        INSERT INTO crm.cases (case_id, customer_id, origin_customer_id, channel, source,
                               opened_by, opened_at)
        VALUES (p_case, p_customer, p_origin, p_channel, p_source, p_interaction, p_at);
    ELSIF p_role = 'response' THEN
        UPDATE crm.cases SET first_response_at = p_at, updated_at = clock_timestamp()
         WHERE case_id = p_case AND p_at >= opened_at
           AND (first_response_at IS NULL OR p_at < first_response_at)
           AND (status IN ('open', 'in_progress') OR p_at <= coalesce(resolved_at, closed_at));
    ELSIF p_role = 'complaint' THEN
        UPDATE crm.cases SET status = 'open', reopen_count = reopen_count + 1,
                             reopened_at = clock_timestamp(), resolved_at = NULL,
                             closed_at = NULL, updated_at = clock_timestamp()
         WHERE case_id = p_case AND status IN ('resolved', 'closed')
           AND p_at > coalesce(resolved_at, closed_at);
    END IF;
END $$;

-- ---- the API ----------------------------------------------------------------

-- POST /v1/customers/{id}/cases. Returns the case document, NULL when the
-- customer does not exist, the gone document when it is erased, or
-- {errors: [...]} (nothing written) when purchase_id is not a purchase of
-- the customer.
CREATE OR REPLACE FUNCTION crm.case_open(p_id uuid, p_case uuid, p_source text, p_channel text,
                                         p_subject text, p_priority text, p_assignee text,
                                         p_purchase uuid, p_opened_at timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    gone jsonb;
    cid uuid;
    c crm.cases;
BEGIN
    gone := (SELECT o.gone FROM crm.open_customer(p_id) AS o);
    IF gone IS NOT NULL THEN
        RETURN gone;
    END IF;
    cid := crm.lock_survivor(p_id);
    IF cid IS NULL THEN
        RETURN crm.gone_doc(p_id); -- NULL unless erased meanwhile
    END IF;
    IF p_purchase IS NOT NULL AND NOT crm.purchase_of(p_purchase, cid) THEN
        RETURN jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
            'pointer', '/purchase_id',
            'detail', 'purchase_id must be a purchase interaction of this customer')));
    END IF;
    INSERT INTO crm.cases (case_id, customer_id, origin_customer_id, priority, channel, subject,
                           assignee, source, purchase_id, opened_at)
    VALUES (p_case, cid, p_id, coalesce(p_priority, 'normal'), p_channel, p_subject, p_assignee,
            p_source, p_purchase, coalesce(p_opened_at, clock_timestamp()))
    RETURNING * INTO c;
    RETURN crm.case_full_doc(c);
END $$;

-- GET /v1/cases/{id}: the case with its interactions, audited as a read of
-- its customer's data; NULL when there is no such case, the gone document
-- when its customer is erased.
CREATE OR REPLACE FUNCTION crm.case_read(p_case uuid, p_key uuid, p_role text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    c crm.cases;
    gone jsonb;
BEGIN
    SELECT * INTO c FROM crm.cases WHERE case_id = p_case;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    gone := crm.gone_doc(c.customer_id);
    IF gone IS NOT NULL THEN
        RETURN gone;
    END IF;
    PERFORM crm.audit_read(p_key, p_role, 'case.read', c.customer_id);
    RETURN crm.case_full_doc(c);
END $$;

-- PATCH /v1/cases/{id}. p_patch: {status?, priority?, subject?, assignee?,
-- purchase_id?} (null removes subject, assignee, purchase_id), validated by
-- the server; p_allowed_from: the statuses the case may be in for the status
-- asked (src/cases.c), checked under the case's row lock. Returns the case,
-- NULL when there is none, the gone document when its customer is erased,
-- {status: illegal_transition, from, to} or {errors: [...]} (nothing
-- written). Resolving sets resolved_at, closing closed_at (now); reopening
-- (resolved or closed -> open) clears both and counts. Asking for the
-- status the case has changes no status nor time.
CREATE OR REPLACE FUNCTION crm.case_patch(p_case uuid, p_patch jsonb, p_allowed_from text[])
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c crm.cases;
    gone jsonb;
    target text;
    now_ts timestamptz := clock_timestamp();
    reopen boolean;
BEGIN
    SELECT * INTO c FROM crm.cases WHERE case_id = p_case FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    gone := crm.gone_doc(c.customer_id);
    IF gone IS NOT NULL THEN
        RETURN gone;
    END IF;
    target := coalesce(p_patch->>'status', c.status);
    IF p_patch ? 'status' AND NOT (c.status = ANY (p_allowed_from)) THEN
        RETURN jsonb_build_object('status', 'illegal_transition', 'from', c.status, 'to', target);
    END IF;
    IF jsonb_typeof(p_patch->'purchase_id') = 'string'
       AND NOT crm.purchase_of((p_patch->>'purchase_id')::uuid, c.customer_id) THEN
        RETURN jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
            'pointer', '/purchase_id',
            'detail', 'purchase_id must be a purchase interaction of this case''s customer')));
    END IF;
    reopen := target = 'open' AND c.status IN ('resolved', 'closed');
    UPDATE crm.cases SET
        status = target,
        priority = coalesce(p_patch->>'priority', priority),
        subject = CASE WHEN p_patch ? 'subject' THEN p_patch->>'subject' ELSE subject END,
        assignee = CASE WHEN p_patch ? 'assignee' THEN p_patch->>'assignee' ELSE assignee END,
        purchase_id = CASE WHEN p_patch ? 'purchase_id' THEN (p_patch->>'purchase_id')::uuid
                           ELSE purchase_id END,
        resolved_at = CASE WHEN target = c.status THEN resolved_at
                           WHEN target = 'resolved' THEN now_ts
                           WHEN reopen THEN NULL ELSE resolved_at END,
        closed_at = CASE WHEN target = c.status THEN closed_at
                         WHEN target = 'closed' THEN now_ts
                         WHEN reopen THEN NULL ELSE closed_at END,
        reopen_count = reopen_count + CASE WHEN reopen THEN 1 ELSE 0 END,
        reopened_at = CASE WHEN reopen THEN now_ts ELSE reopened_at END,
        updated_at = now_ts
     WHERE case_id = p_case
    RETURNING * INTO c;
    RETURN crm.case_full_doc(c);
END $$;

-- GET /v1/customers/{id}/cases: the customer's newest p_limit cases (of
-- status p_status, NULL: any), audited; NULL when the customer does not
-- exist, the gone document when erased.
CREATE OR REPLACE FUNCTION crm.customer_cases(p_id uuid, p_status text, p_limit int, p_key uuid,
                                              p_role text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    sid uuid;
    gone jsonb;
BEGIN
    SELECT o.sid, o.gone INTO sid, gone FROM crm.open_customer(p_id) AS o;
    IF sid IS NULL OR gone IS NOT NULL THEN
        RETURN gone;
    END IF;
    PERFORM crm.audit_read(p_key, p_role, 'customer.cases.read', sid);
    RETURN jsonb_build_object('customer_id', sid, 'items', coalesce(
        (SELECT jsonb_agg(crm.case_doc(x.c) ORDER BY (x.c).opened_at DESC, (x.c).case_id)
           FROM (SELECT c FROM crm.cases c
                  WHERE c.customer_id = sid AND (p_status IS NULL OR c.status = p_status)
                  ORDER BY c.opened_at DESC, c.case_id LIMIT p_limit) AS x), '[]'));
END $$;

-- A customer's cases for the data export (every id it absorbed included).
CREATE OR REPLACE FUNCTION crm.cases_export(p_ids uuid[]) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(crm.case_doc(c) ORDER BY c.opened_at, c.case_id), '[]')
      FROM crm.cases c WHERE c.customer_id = ANY (p_ids)
$$;

-- Erasure (crm.erase_customer): the cases' texts go (subject, assignee);
-- the rest stays as it was, statuses included, so that the counts, times
-- and KPIs are the same before and after (an erasure is no resolution: a
-- case left open stays open, and can no longer be worked: 410). Returns
-- how many cases were anonymised.
CREATE OR REPLACE FUNCTION crm.erase_cases(p_ids uuid[], p_at timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    UPDATE crm.cases SET subject = NULL, assignee = NULL, updated_at = p_at
     WHERE customer_id = ANY (p_ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- ---- KPIs -------------------------------------------------------------------

-- Case KPIs for [p_from, p_to) over the customers in p_customers (NULL:
-- all), in total and by the channel a case was opened on (docs/value.md
-- "Cases"): opened in the period; open at its end (opened before the end,
-- neither resolved nor closed before it as far as the case's times say:
-- a reopened case has forgotten its earlier resolution); resolved and
-- closed in it; of the cases opened in it, how many were answered
-- (first_response_at) and the median time to that first response, how many
-- were reopened and the reopen rate; and the median time from opening to
-- resolution of the cases resolved in it. Times in seconds.
CREATE OR REPLACE FUNCTION crm.case_kpis(p_from timestamptz, p_to timestamptz,
                                         p_customers uuid[]) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        WITH c AS (
                SELECT k.* FROM crm.cases k
                 WHERE k.opened_at < p_to
                   AND (p_customers IS NULL OR k.customer_id = ANY (p_customers))),
            g AS (
                SELECT coalesce(channel, '') AS k, channel IS NULL AS total,
                       count(*) FILTER (WHERE opened_at >= p_from) AS opened,
                       count(*) FILTER (WHERE coalesce(least(resolved_at, closed_at), 'infinity')
                                              >= p_to) AS open_at_end,
                       count(*) FILTER (WHERE resolved_at >= p_from AND resolved_at < p_to)
                           AS resolved,
                       count(*) FILTER (WHERE closed_at >= p_from AND closed_at < p_to) AS closed,
                       count(*) FILTER (WHERE opened_at >= p_from AND first_response_at IS NOT NULL)
                           AS responded,
                       count(*) FILTER (WHERE opened_at >= p_from AND reopen_count > 0) AS reopened,
                       percentile_cont(0.5) WITHIN GROUP (
                           ORDER BY extract(epoch FROM first_response_at - opened_at))
                           FILTER (WHERE opened_at >= p_from AND first_response_at IS NOT NULL)
                           AS median_first_response,
                       percentile_cont(0.5) WITHIN GROUP (
                           ORDER BY extract(epoch FROM resolved_at - opened_at))
                           FILTER (WHERE resolved_at >= p_from AND resolved_at < p_to)
                           AS median_resolution
                  FROM c GROUP BY GROUPING SETS ((channel), ())),
            rows AS (
                SELECT k, total, jsonb_build_object(
                           'opened', opened, 'open_at_end', open_at_end, 'resolved', resolved,
                           'closed', closed, 'responded', responded, 'reopened', reopened,
                           'reopen_rate', CASE WHEN opened > 0
                                               THEN round(reopened::numeric / opened, 6) END,
                           'median_first_response_seconds',
                               round(median_first_response::numeric, 3),
                           'median_resolution_seconds', round(median_resolution::numeric, 3))
                           AS doc
                  FROM g)
        SELECT coalesce((SELECT doc FROM rows WHERE total),
                        jsonb_build_object('opened', 0, 'open_at_end', 0, 'resolved', 0,
                                           'closed', 0, 'responded', 0, 'reopened', 0,
                                           'reopen_rate', NULL,
                                           'median_first_response_seconds', NULL,
                                           'median_resolution_seconds', NULL))
               || jsonb_build_object('by_channel', coalesce(
                      (SELECT jsonb_object_agg(k, doc) FROM rows WHERE NOT total), '{}'))
    );
END $$;

-- ---- merges -----------------------------------------------------------------

-- A merge: the absorbed customer's cases move to the survivor.
CREATE OR REPLACE FUNCTION crm.merge_cases() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE crm.cases SET customer_id = NEW.survivor_id WHERE customer_id = NEW.absorbed_id;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('merges_cases', 'crm.merges', $def$
CREATE OR REPLACE TRIGGER merges_cases AFTER INSERT ON crm.merges
    FOR EACH ROW EXECUTE FUNCTION crm.merge_cases()
$def$);

-- An unmerge (crm.unmerge sets unmerged_at last, after the interactions
-- went back): a case goes back with the absorbed customer when it was opened
-- for one of its members (origin_customer_id, as interactions) or when the
-- interaction that opened it went back.
CREATE OR REPLACE FUNCTION crm.unmerge_cases() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE crm.cases c SET customer_id = NEW.absorbed_id
     WHERE c.customer_id = crm.survivor_of(NEW.survivor_id)
       AND (c.origin_customer_id = ANY (NEW.absorbed_members)
            OR EXISTS (SELECT 1 FROM crm.interactions i
                        WHERE i.interaction_id = c.opened_by
                          AND i.customer_id = NEW.absorbed_id));
    RETURN NULL;
END $$;

SELECT crm.define_trigger('merges_unmerge_cases', 'crm.merges', $def$
CREATE OR REPLACE TRIGGER merges_unmerge_cases AFTER UPDATE OF unmerged_at ON crm.merges
    FOR EACH ROW WHEN (OLD.unmerged_at IS NULL AND NEW.unmerged_at IS NOT NULL)
    EXECUTE FUNCTION crm.unmerge_cases()
$def$);

-- ---- the profile cache ------------------------------------------------------

-- The profile shows the open cases (crm.open_cases_doc): every change of a
-- case, and its move to another customer, invalidates the documents.
SELECT crm.define_trigger('cases_profile_stale', 'crm.cases', $def$
CREATE OR REPLACE TRIGGER cases_profile_stale AFTER INSERT OR UPDATE OR DELETE ON crm.cases
    FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row()
$def$);

-- ---- events -----------------------------------------------------------------

-- case.opened and case.status_changed (docs/activation.md). Their data
-- holds no personal text (no subject, no assignee): erasure has nothing to
-- clear in them.
CREATE OR REPLACE FUNCTION crm.cases_opened_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.events (type, customer_id, data)
    SELECT 'case.opened', n.customer_id,
           jsonb_build_object('case_id', n.case_id, 'status', n.status, 'priority', n.priority,
                              'channel', n.channel, 'opened_at', crm.ts(n.opened_at),
                              'opened_by', n.opened_by, 'purchase_id', n.purchase_id)
      FROM new_rows n ORDER BY n.case_id;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('cases_opened_event', 'crm.cases', $def$
CREATE OR REPLACE TRIGGER cases_opened_event AFTER INSERT ON crm.cases
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION crm.cases_opened_event()
$def$);

-- A row trigger: case changes are rare, and a trigger with transition
-- tables cannot name the status column.
CREATE OR REPLACE FUNCTION crm.case_status_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.events (type, customer_id, data)
    VALUES ('case.status_changed', NEW.customer_id,
            jsonb_build_object('case_id', NEW.case_id, 'from', OLD.status, 'to', NEW.status,
                               'reopen_count', NEW.reopen_count));
    RETURN NULL;
END $$;

SELECT crm.define_trigger('cases_status_event', 'crm.cases', $def$
CREATE OR REPLACE TRIGGER cases_status_event AFTER UPDATE OF status ON crm.cases
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION crm.case_status_event()
$def$);
