-- activation: the change feed's triggers (every business change writes its
-- event in the change's transaction), the feed itself, and the webhook
-- fan-out, claims, results, queue and purge (docs/activation.md). Tables:
-- sql/010_activation.sql. Triggers go through crm.define_trigger (core.sql).


-- ---- emitting ---------------------------------------------------------------
CREATE OR REPLACE FUNCTION crm.customers_created_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.events (type, customer_id, data)
    SELECT 'customer.created', n.customer_id, '{}' FROM new_rows n ORDER BY n.customer_id;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('customers_created_event', 'crm.customers', $def$
CREATE OR REPLACE TRIGGER customers_created_event AFTER INSERT ON crm.customers
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION crm.customers_created_event()
$def$);

CREATE OR REPLACE FUNCTION crm.identifiers_added_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.events (type, customer_id, data)
    SELECT 'identifier.added', n.customer_id,
           jsonb_build_object('kind', n.kind, 'namespace', n.namespace, 'value', n.value,
                              'source', n.source)
      FROM new_rows n ORDER BY n.kind, n.namespace, n.value;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('identifiers_added_event', 'crm.identifiers', $def$
CREATE OR REPLACE TRIGGER identifiers_added_event AFTER INSERT ON crm.identifiers
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION crm.identifiers_added_event()
$def$);

CREATE OR REPLACE FUNCTION crm.merges_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.events (type, customer_id, data)
    SELECT 'customer.merged', n.survivor_id,
           jsonb_build_object('survivor_id', n.survivor_id, 'absorbed_id', n.absorbed_id,
                              'merge_id', n.merge_id, 'reason', n.reason)
      FROM new_rows n ORDER BY n.merge_id;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('merges_event', 'crm.merges', $def$
CREATE OR REPLACE TRIGGER merges_event AFTER INSERT ON crm.merges
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION crm.merges_event()
$def$);


-- An identifier taken off a customer (crm.detach_identifier, identity.sql);
-- rare, so a row trigger. On the customer it was taken off; the live
-- membership re-evaluates that customer (an unknown type to
-- crm.feed_change_bits), and the new customer of a move through its
-- customer.created.
CREATE OR REPLACE FUNCTION crm.identifier_detached_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.events (type, customer_id, data)
    VALUES ('identifier.detached', NEW.customer_id,
            jsonb_build_object('detach_id', NEW.detach_id, 'mode', NEW.mode,
                               'kind', NEW.identifier->>'kind',
                               'namespace', coalesce(NEW.identifier->>'namespace', ''),
                               'value', NEW.identifier->>'value',
                               'new_customer_id', NEW.new_customer_id,
                               'interactions_moved', cardinality(NEW.interaction_ids)));
    RETURN NULL;
END $$;

SELECT crm.define_trigger('identifier_detachments_event', 'crm.identifier_detachments', $def$
CREATE OR REPLACE TRIGGER identifier_detachments_event AFTER INSERT ON crm.identifier_detachments
    FOR EACH ROW EXECUTE FUNCTION crm.identifier_detached_event()
$def$);


-- crm.unmerge sets unmerged_at once; rare, so a row trigger.
CREATE OR REPLACE FUNCTION crm.unmerge_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.events (type, customer_id, data)
    VALUES ('customer.unmerged', NEW.absorbed_id,
            jsonb_build_object('customer_id', NEW.absorbed_id, 'survivor_id', NEW.survivor_id,
                               'merge_id', NEW.merge_id));
    RETURN NULL;
END $$;

SELECT crm.define_trigger('merges_unmerge_event', 'crm.merges', $def$
CREATE OR REPLACE TRIGGER merges_unmerge_event AFTER UPDATE OF unmerged_at ON crm.merges
    FOR EACH ROW WHEN (OLD.unmerged_at IS NULL AND NEW.unmerged_at IS NOT NULL)
    EXECUTE FUNCTION crm.unmerge_event()
$def$);


-- Field changes (traits, preferences): {"<field>": new value, or null when
-- removed}, one event per customer and transaction.
CREATE OR REPLACE FUNCTION crm.field_change_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ev_type text := CASE TG_TABLE_NAME WHEN 'traits' THEN 'traits.changed'
                                       ELSE 'preferences.changed' END;
    member text := TG_TABLE_NAME;
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO crm.events AS e (type, customer_id, data)
        SELECT ev_type, o.customer_id,
               jsonb_build_object(member, jsonb_object_agg(o.name, 'null'::jsonb))
          FROM old_rows o GROUP BY o.customer_id ORDER BY o.customer_id
        ON CONFLICT (xid, customer_id, type)
            WHERE type IN ('traits.changed', 'preferences.changed')
        DO UPDATE SET data = jsonb_build_object(member,
                                 coalesce(e.data->member, '{}') || (excluded.data->member));
    ELSE
        INSERT INTO crm.events AS e (type, customer_id, data)
        SELECT ev_type, n.customer_id, jsonb_build_object(member, jsonb_object_agg(n.name, n.value))
          FROM new_rows n GROUP BY n.customer_id ORDER BY n.customer_id
        ON CONFLICT (xid, customer_id, type)
            WHERE type IN ('traits.changed', 'preferences.changed')
        DO UPDATE SET data = jsonb_build_object(member,
                                 coalesce(e.data->member, '{}') || (excluded.data->member));
    END IF;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('traits_insert_event', 'crm.traits', $def$
CREATE OR REPLACE TRIGGER traits_insert_event AFTER INSERT ON crm.traits
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION crm.field_change_event()
$def$);

SELECT crm.define_trigger('traits_update_event', 'crm.traits', $def$
CREATE OR REPLACE TRIGGER traits_update_event AFTER UPDATE ON crm.traits
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION crm.field_change_event()
$def$);

SELECT crm.define_trigger('traits_delete_event', 'crm.traits', $def$
CREATE OR REPLACE TRIGGER traits_delete_event AFTER DELETE ON crm.traits
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION crm.field_change_event()
$def$);

SELECT crm.define_trigger('preferences_insert_event', 'crm.preferences', $def$
CREATE OR REPLACE TRIGGER preferences_insert_event AFTER INSERT ON crm.preferences
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION crm.field_change_event()
$def$);

SELECT crm.define_trigger('preferences_update_event', 'crm.preferences', $def$
CREATE OR REPLACE TRIGGER preferences_update_event AFTER UPDATE ON crm.preferences
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION crm.field_change_event()
$def$);

SELECT crm.define_trigger('preferences_delete_event', 'crm.preferences', $def$
CREATE OR REPLACE TRIGGER preferences_delete_event AFTER DELETE ON crm.preferences
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION crm.field_change_event()
$def$);

CREATE OR REPLACE FUNCTION crm.consent_changed_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.events (type, customer_id, data)
    SELECT 'consent.changed', n.customer_id,
           jsonb_build_object('consent_event_id', n.event_id, 'purpose', n.purpose,
                              'channel', n.channel, 'status', n.status, 'source', n.source,
                              'occurred_at', crm.ts(n.occurred_at))
      FROM new_rows n ORDER BY n.event_id;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('consent_events_changed_event', 'crm.consent_events', $def$
CREATE OR REPLACE TRIGGER consent_events_changed_event AFTER INSERT ON crm.consent_events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION crm.consent_changed_event()
$def$);


-- Value tiers: a customer's first tier, and every change of it.
CREATE OR REPLACE FUNCTION crm.tier_insert_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.events (type, customer_id, data)
    SELECT 'value.tier_changed', n.customer_id,
           jsonb_build_object('from', NULL, 'to', n.tier, 'run_id', n.run_id)
      FROM new_rows n ORDER BY n.customer_id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION crm.tier_update_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.events (type, customer_id, data)
    SELECT 'value.tier_changed', n.customer_id,
           jsonb_build_object('from', o.tier, 'to', n.tier, 'run_id', n.run_id)
      FROM new_rows n JOIN old_rows o ON o.customer_id = n.customer_id
     WHERE o.tier IS DISTINCT FROM n.tier ORDER BY n.customer_id;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('customer_value_insert_event', 'crm.customer_value', $def$
CREATE OR REPLACE TRIGGER customer_value_insert_event AFTER INSERT ON crm.customer_value
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION crm.tier_insert_event()
$def$);

SELECT crm.define_trigger('customer_value_update_event', 'crm.customer_value', $def$
CREATE OR REPLACE TRIGGER customer_value_update_event AFTER UPDATE ON crm.customer_value
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION crm.tier_update_event()
$def$);


-- Erasure (crm.erase_customer sets erased_at on the customer and the ids it
-- absorbed): the personal data of the retained events of each goes (the
-- identifier values, trait and preference values, moment dates; interaction payloads are
-- cleared on the interaction itself, which is its own event), and the
-- survivor gets its customer.erased event.
CREATE OR REPLACE FUNCTION crm.customer_erased_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE crm.events SET data = jsonb_build_object('erased', true)
     WHERE customer_id = NEW.customer_id
       AND type IN ('identifier.added', 'identifier.detached', 'traits.changed',
                    'preferences.changed', 'moment.due');
    IF NEW.merged_into IS NULL THEN
        INSERT INTO crm.events (type, customer_id, data)
        VALUES ('customer.erased', NEW.customer_id,
                jsonb_build_object('erased_at', crm.ts(NEW.erased_at)));
    END IF;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('customers_erased_event', 'crm.customers', $def$
CREATE OR REPLACE TRIGGER customers_erased_event AFTER UPDATE OF erased_at ON crm.customers
    FOR EACH ROW WHEN (OLD.erased_at IS NULL AND NEW.erased_at IS NOT NULL)
    EXECUTE FUNCTION crm.customer_erased_event()
$def$);


-- ---- reading ----------------------------------------------------------------
CREATE OR REPLACE FUNCTION crm.interaction_event_data(i crm.interactions) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('interaction_id', i.interaction_id, 'source', i.source,
                              'external_id', i.external_id, 'channel', i.channel,
                              'type', i.type, 'occurred_at', crm.ts(i.occurred_at),
                              'amount', trim_scale(i.amount), 'currency', i.currency,
                              'tags', to_jsonb(i.tags), 'payload', i.payload,
                              'scores', crm.scores_doc(i.nps, i.csat, i.ces),
                              'case_id', i.case_id)
$$;


-- The envelope every consumer sees (feed item and webhook body alike).
CREATE OR REPLACE FUNCTION crm.event_envelope(p_seq bigint, p_type text, p_at timestamptz,
                                   p_customer uuid, p_data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('id', 'evt_' || p_seq, 'type', p_type,
                              'occurred_at', crm.ts(p_at), 'customer_id', p_customer,
                              'schema_version', 1, 'data', p_data)
$$;


-- Events after (p_xid, p_seq) in feed order, of transactions older than the
-- oldest still running (so none can later appear before them), newer than
-- the retention, of the given types (NULL: all).
CREATE OR REPLACE FUNCTION crm.event_rows(p_xid xid8, p_seq bigint, p_types text[], p_limit int,
                               p_retention_s int)
RETURNS TABLE (xid xid8, seq bigint, type text, occurred_at timestamptz, customer_id uuid,
               data jsonb)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    horizon xid8 := pg_snapshot_xmin(pg_current_snapshot());
    since timestamptz := now() - make_interval(secs => p_retention_s);
BEGIN
    RETURN QUERY
    SELECT * FROM (
        (SELECT e.xid, e.seq, e.type, e.occurred_at, e.customer_id, e.data
           FROM crm.events e
          WHERE (e.xid, e.seq) > (p_xid, p_seq) AND e.xid < horizon AND e.occurred_at >= since
            AND (p_types IS NULL OR e.type = ANY (p_types))
          ORDER BY e.xid, e.seq LIMIT p_limit)
        UNION ALL
        (SELECT i.event_xid, i.event_seq, 'interaction.created'::text, i.received_at,
                i.customer_id, crm.interaction_event_data(i)
           FROM crm.interactions i
          WHERE (p_types IS NULL OR 'interaction.created' = ANY (p_types))
            AND (i.event_xid, i.event_seq) > (p_xid, p_seq) AND i.event_xid < horizon
            AND i.received_at >= since
          ORDER BY i.event_xid, i.event_seq LIMIT p_limit)
    ) AS r ORDER BY 1, 2 LIMIT p_limit;
END $$;


-- One feed page: {items: [envelope...], next_cursor} (next_cursor: the
-- position of the last item; when there is none, the position given with
-- the current time, so a consumer of a quiet feed does not see its cursor
-- expire: nothing after it was left unread).
CREATE OR REPLACE FUNCTION crm.event_feed(p_xid xid8, p_seq bigint, p_types text[],
                               p_limit int, p_retention_s int) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    doc jsonb;
BEGIN
    SELECT jsonb_build_object(
               'items', coalesce(jsonb_agg(crm.event_envelope(r.seq, r.type, r.occurred_at,
                                                              r.customer_id, r.data)
                                           ORDER BY r.xid, r.seq), '[]'),
               'next_cursor', coalesce(
                   (array_agg(r.xid::text || '-' || r.seq || '-'
                              || floor(extract(epoch FROM r.occurred_at))::bigint
                              ORDER BY r.xid DESC, r.seq DESC))[1],
                   p_xid::text || '-' || p_seq || '-' || floor(extract(epoch FROM now()))::bigint))
      INTO doc
      FROM crm.event_rows(p_xid, p_seq, p_types, p_limit, p_retention_s) AS r;
    RETURN doc;
END $$;


-- One event's envelope by its position; NULL when it is no longer retained.
CREATE OR REPLACE FUNCTION crm.event_doc(p_xid xid8, p_seq bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT crm.event_envelope(e.seq, e.type, e.occurred_at, e.customer_id, e.data)
           FROM crm.events e WHERE e.xid = p_xid AND e.seq = p_seq),
        (SELECT crm.event_envelope(i.event_seq, 'interaction.created', i.received_at,
                                   i.customer_id, crm.interaction_event_data(i))
           FROM crm.interactions i WHERE i.event_xid = p_xid AND i.event_seq = p_seq))
$$;

CREATE OR REPLACE FUNCTION crm.webhook_doc(w crm.webhooks) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('webhook_id', w.webhook_id, 'url', w.url,
                              'event_types', to_jsonb(w.event_types), 'enabled', w.enabled,
                              'segment_id', w.segment_id,
                              'description', w.description,
                              'created_at', crm.ts(w.created_at),
                              'updated_at', crm.ts(w.updated_at))
$$;

CREATE OR REPLACE FUNCTION crm.delivery_doc(d crm.webhook_deliveries) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('delivery_id', d.delivery_id, 'webhook_id', d.webhook_id,
                              'event_id', 'evt_' || d.event_seq, 'event_type', d.event_type,
                              'customer_id', d.customer_id, 'status', d.status,
                              'attempts', d.attempts, 'created_at', crm.ts(d.created_at),
                              'last_attempt_at', crm.ts(d.last_attempt_at),
                              'last_status', d.last_status, 'last_error', d.last_error,
                              'next_attempt_at', CASE WHEN d.status = 'pending'
                                                      THEN crm.ts(d.next_attempt_at) END,
                              'delivered_at', crm.ts(d.delivered_at))
$$;


-- Make the deliveries of the next events of the feed (for every enabled
-- webhook that wants their type, existed when they happened and, with a
-- segment filter, whose segment has the customer as a member at fan-out
-- time or whose segment the event is about) and move
-- the fan-out position past them. Returns how many events it passed, or -1
-- when another instance is fanning out. With no enabled webhook the
-- position jumps to the end of the feed (those events go to no one), so a
-- webhook created after a busy quiet spell does not wait for the fan-out to
-- walk through it.
CREATE OR REPLACE FUNCTION crm.webhook_fanout(p_limit int, p_retention_s int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    st crm.activation_state%ROWTYPE;
    n int;
    last_xid xid8;
    last_seq bigint;
BEGIN
    -- One instance at a time, by an advisory lock rather than the state
    -- row's: a row lock is a WAL record and makes the transaction take an
    -- xid (a commit record), every 100 ms on an idle server (bench/wal.sh).
    -- The position is then only written when it moves.
    IF NOT pg_try_advisory_xact_lock(74120930, 1) THEN
        RETURN -1;
    END IF;
    SELECT * INTO st FROM crm.activation_state;
    IF NOT EXISTS (SELECT 1 FROM crm.webhooks WHERE enabled) THEN
        SELECT x.xid, x.seq INTO last_xid, last_seq FROM (
            (SELECT e.xid, e.seq FROM crm.events e
              WHERE e.xid < pg_snapshot_xmin(pg_current_snapshot())
              ORDER BY e.xid DESC, e.seq DESC LIMIT 1)
            UNION ALL
            (SELECT i.event_xid, i.event_seq FROM crm.interactions i
              WHERE i.event_xid < pg_snapshot_xmin(pg_current_snapshot())
              ORDER BY i.event_xid DESC, i.event_seq DESC LIMIT 1)) AS x
         ORDER BY 1 DESC, 2 DESC LIMIT 1;
        IF last_xid IS NOT NULL AND (last_xid, last_seq) > (st.fanout_xid, st.fanout_seq) THEN
            UPDATE crm.activation_state SET fanout_xid = last_xid, fanout_seq = last_seq;
        END IF;
        RETURN 0;
    END IF;
    WITH p AS MATERIALIZED (
        SELECT r.xid, r.seq, r.type, r.occurred_at, r.customer_id,
               CASE WHEN r.type IN ('segment.entered', 'segment.exited')
                    THEN (r.data->>'segment_id')::uuid END AS event_segment
          FROM crm.event_rows(st.fanout_xid, st.fanout_seq, NULL, p_limit, p_retention_s) AS r),
    ins AS (
        INSERT INTO crm.webhook_deliveries (webhook_id, event_xid, event_seq, event_type,
                                            event_at, customer_id)
        SELECT w.webhook_id, p.xid, p.seq, p.type, p.occurred_at, p.customer_id
          FROM p
          JOIN crm.webhooks w ON w.enabled AND w.created_at <= p.occurred_at
                             AND (w.event_types IS NULL OR p.type = ANY (w.event_types))
                             -- a segment filter: the segment's members now, and the
                             -- segment's own entered/exited events
                             AND (w.segment_id IS NULL OR p.event_segment = w.segment_id
                                  OR EXISTS (SELECT 1 FROM crm.segment_members m
                                              WHERE m.segment_id = w.segment_id
                                                AND m.customer_id = p.customer_id))
         ORDER BY p.xid, p.seq, w.webhook_id
        ON CONFLICT (webhook_id, event_xid, event_seq) DO NOTHING)
    SELECT count(*), (array_agg(p.xid ORDER BY p.xid DESC, p.seq DESC))[1],
           (array_agg(p.seq ORDER BY p.xid DESC, p.seq DESC))[1]
      INTO n, last_xid, last_seq FROM p;
    IF n = 0 THEN
        RETURN 0;
    END IF;
    UPDATE crm.activation_state SET fanout_xid = last_xid, fanout_seq = last_seq;
    RETURN n;
END $$;


-- Claim up to p_limit due deliveries for p_owner for p_lease_s seconds: not
-- leased by another, of an enabled webhook, and with no earlier pending
-- delivery of the same customer to the same webhook (order per customer).
-- Each claim counts as an attempt. Returns the body to send (NULL when the
-- event is no longer retained).
CREATE OR REPLACE FUNCTION crm.webhook_claim(p_owner text, p_lease_s int, p_limit int)
RETURNS TABLE (delivery_id bigint, url text, secret text, attempts int, event_id text,
               body text)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH c AS (
        SELECT d.delivery_id FROM crm.webhook_deliveries d
         WHERE d.status = 'pending' AND d.next_attempt_at <= clock_timestamp()
           AND (d.lease_until IS NULL OR d.lease_until < clock_timestamp())
           AND EXISTS (SELECT 1 FROM crm.webhooks w
                        WHERE w.webhook_id = d.webhook_id AND w.enabled)
           -- the customer's earliest pending delivery to this webhook: a
           -- correlated subquery with LIMIT 1 (one index descent per
           -- candidate); written as NOT EXISTS the planner made it an anti
           -- join scanning every pending row per candidate when its
           -- statistics were from an empty queue (2,000 pending: 36/s)
           AND (d.event_xid, d.event_seq) = (
               SELECT e.event_xid, e.event_seq FROM crm.webhook_deliveries e
                WHERE e.webhook_id = d.webhook_id AND e.customer_id = d.customer_id
                  AND e.status = 'pending'
                ORDER BY e.event_xid, e.event_seq LIMIT 1)
         ORDER BY d.next_attempt_at, d.delivery_id
         LIMIT p_limit
         FOR UPDATE OF d SKIP LOCKED),
    u AS (
        UPDATE crm.webhook_deliveries d
           SET lease_owner = p_owner,
               lease_until = clock_timestamp() + make_interval(secs => p_lease_s),
               attempts = d.attempts + 1
          FROM c WHERE d.delivery_id = c.delivery_id
        RETURNING d.delivery_id, d.webhook_id, d.attempts, d.event_xid, d.event_seq)
    SELECT u.delivery_id, w.url, w.secret, u.attempts, 'evt_' || u.event_seq,
           crm.event_doc(u.event_xid, u.event_seq)::text
      FROM u JOIN crm.webhooks w ON w.webhook_id = u.webhook_id
     ORDER BY u.event_xid, u.event_seq;
END $$;


-- The outcomes of claimed attempts, recorded together: p_results is
-- [{id, ok, status, error, delay_ms, horizon_s}, ...]. An outcome is ignored
-- when its lease was lost. A failure is retried after delay_ms, unless that
-- is past horizon_s since the delivery was made: then it is dead-lettered.
-- Returns each recorded delivery with its status.
DROP FUNCTION IF EXISTS crm.webhook_result(bigint, text, boolean, int, text, bigint, int);

CREATE OR REPLACE FUNCTION crm.webhook_results(p_owner text, p_results jsonb)
RETURNS TABLE (delivery_id bigint, status text)
LANGUAGE sql AS $$
    WITH now_ts AS (SELECT clock_timestamp() AS t),
    r AS (SELECT * FROM jsonb_to_recordset(p_results)
                 AS x(id bigint, ok boolean, status int, error text, delay_ms bigint,
                      horizon_s int))
    UPDATE crm.webhook_deliveries d SET
        status = CASE WHEN r.ok THEN 'delivered'
                      WHEN n.t + make_interval(secs => r.delay_ms / 1000.0)
                           > d.created_at + make_interval(secs => r.horizon_s) THEN 'dead'
                      ELSE 'pending' END,
        delivered_at = CASE WHEN r.ok THEN n.t END,
        last_attempt_at = n.t, last_status = r.status, last_error = left(r.error, 500),
        next_attempt_at = CASE WHEN r.ok THEN d.next_attempt_at
                               ELSE n.t + make_interval(secs => r.delay_ms / 1000.0) END,
        lease_owner = NULL, lease_until = NULL
      FROM r, now_ts n
     WHERE d.delivery_id = r.id AND d.lease_owner = p_owner AND d.status = 'pending'
    RETURNING d.delivery_id, d.status
$$;


-- Queue depth and the age of the oldest undelivered event, for /metrics.
CREATE OR REPLACE FUNCTION crm.webhook_queue() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('pending', count(*),
                              'oldest_age_seconds', coalesce(
                                  extract(epoch FROM clock_timestamp() - min(event_at)), 0))
      FROM crm.webhook_deliveries WHERE status = 'pending'
$$;


-- Retention: events and finished deliveries older than it go.
CREATE OR REPLACE FUNCTION crm.activation_purge(p_retention_s int) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    since timestamptz := now() - make_interval(secs => p_retention_s);
    n_events bigint;
    n_deliveries bigint;
BEGIN
    DELETE FROM crm.events WHERE occurred_at < since;
    GET DIAGNOSTICS n_events = ROW_COUNT;
    DELETE FROM crm.webhook_deliveries WHERE status <> 'pending' AND created_at < since;
    GET DIAGNOSTICS n_deliveries = ROW_COUNT;
    RETURN jsonb_build_object('events', n_events, 'deliveries', n_deliveries);
END $$;


-- A webhook's deliveries, newest first: {webhook_id, items}; NULL when
-- there is no such webhook.
CREATE OR REPLACE FUNCTION crm.webhook_deliveries_doc(p_webhook uuid, p_status text, p_limit int)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM crm.webhooks WHERE webhook_id = p_webhook) THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('webhook_id', p_webhook, 'items', coalesce(
        (SELECT jsonb_agg(crm.delivery_doc(x.d) ORDER BY (x.d).delivery_id DESC)
           FROM (SELECT d FROM crm.webhook_deliveries d
                  WHERE d.webhook_id = p_webhook AND (p_status IS NULL OR d.status = p_status)
                  ORDER BY d.delivery_id DESC LIMIT p_limit) AS x), '[]'));
END $$;


-- Send a delivered or dead-lettered delivery again, as a new series of
-- attempts (the retry horizon starts afresh). {status: replayed|pending,
-- delivery}; NULL when the webhook has no such delivery.
CREATE OR REPLACE FUNCTION crm.webhook_replay(p_webhook uuid, p_delivery bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    d crm.webhook_deliveries%ROWTYPE;
BEGIN
    UPDATE crm.webhook_deliveries SET status = 'pending', attempts = 0,
           created_at = clock_timestamp(), next_attempt_at = clock_timestamp(),
           delivered_at = NULL, lease_owner = NULL, lease_until = NULL
     WHERE webhook_id = p_webhook AND delivery_id = p_delivery AND status <> 'pending'
    RETURNING * INTO d;
    IF FOUND THEN
        RETURN jsonb_build_object('status', 'replayed', 'delivery', crm.delivery_doc(d));
    END IF;
    SELECT * INTO d FROM crm.webhook_deliveries
     WHERE webhook_id = p_webhook AND delivery_id = p_delivery;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('status', 'pending', 'delivery', crm.delivery_doc(d));
END $$;
