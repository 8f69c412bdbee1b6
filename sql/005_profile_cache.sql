-- 005_profile_cache: the profile document, maintained instead of rebuilt on
-- every read, and read-audit rows written in batches by the server.
--
-- crm.profile() runs about twenty subqueries; the call centre reads the same
-- profile many times between two writes. The built document is kept in
-- crm.profile_cache and invalidated by triggers in the same transaction as
-- every write that changes what the profile shows, so a read that follows a
-- committed write never sees the old document.
--
-- The invalidation protocol (why a concurrent read cannot put back a stale
-- document): every cache row carries a version. A write bumps the version
-- (inserting the row if needed) and clears the document; a read that misses
-- remembers the version it saw, builds the document, and stores it only if
-- the version is still the same (or, with no row, only if nobody inserted
-- one meanwhile). A write that committed after the reader's snapshot has
-- bumped the version, so the reader's store does nothing. Changes that touch
-- every customer at once (a value run, a settings change) bump one global
-- epoch instead; a document stored under an older epoch is a miss.
-- Consents recorded with a future occurred_at change the document with no
-- write at all, so a document is also only valid until the next such time.

CREATE TABLE crm.profile_cache (
    customer_id  uuid PRIMARY KEY,
    version      bigint NOT NULL DEFAULT 0,
    epoch        bigint NOT NULL DEFAULT 0,
    doc          jsonb,          -- NULL: invalidated, build again
    valid_until  timestamptz     -- NULL: until the next write
) WITH (fillfactor = 80);

CREATE TABLE crm.profile_cache_epoch (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    epoch     bigint NOT NULL
);
INSERT INTO crm.profile_cache_epoch VALUES (true, 1);

-- Invalidate one customer's document. Once per transaction is enough: a
-- row this transaction already bumped (xmin is ours) is left alone, so the
-- many rows of one write (stats, needs, identifiers) cost one version bump.
CREATE FUNCTION crm.profile_stale(p_customer uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_customer IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO crm.profile_cache AS c (customer_id, version) VALUES (p_customer, 1)
    ON CONFLICT (customer_id) DO UPDATE SET version = c.version + 1, doc = NULL
        WHERE c.doc IS NOT NULL OR c.xmin <> xid(pg_current_xact_id());
END $$;

CREATE FUNCTION crm.profile_stale_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM crm.profile_stale(OLD.customer_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND (TG_OP = 'INSERT' OR NEW.customer_id <> OLD.customer_id) THEN
        PERFORM crm.profile_stale(NEW.customer_id);
    END IF;
    RETURN NULL;
END $$;

-- Every table the profile document is built from (see crm.profile and
-- crm.profile_sections), except the value tables, which use the epoch.
CREATE TRIGGER identifiers_profile_stale AFTER INSERT OR UPDATE OR DELETE ON crm.identifiers
    FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();
CREATE TRIGGER traits_profile_stale AFTER INSERT OR UPDATE OR DELETE ON crm.traits
    FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();
CREATE TRIGGER interaction_stats_profile_stale AFTER INSERT OR UPDATE OR DELETE
    ON crm.interaction_stats FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();
CREATE TRIGGER customer_needs_profile_stale AFTER INSERT OR UPDATE OR DELETE
    ON crm.customer_needs FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();
CREATE TRIGGER preferences_profile_stale AFTER INSERT OR UPDATE OR DELETE ON crm.preferences
    FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();
CREATE TRIGGER consent_events_profile_stale AFTER INSERT OR UPDATE OR DELETE
    ON crm.consent_events FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();

-- A customer row: its own document, and the merged_ids of the survivors it
-- joins or leaves.
CREATE FUNCTION crm.profile_stale_customer() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM crm.profile_stale(NEW.customer_id);
    IF NEW.merged_into IS DISTINCT FROM OLD.merged_into THEN
        PERFORM crm.profile_stale(OLD.merged_into);
        PERFORM crm.profile_stale(NEW.merged_into);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER customers_profile_stale AFTER UPDATE ON crm.customers
    FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_customer();

CREATE FUNCTION crm.profile_stale_all() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE crm.profile_cache_epoch SET epoch = epoch + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER customer_value_profile_stale AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON crm.customer_value FOR EACH STATEMENT EXECUTE FUNCTION crm.profile_stale_all();
CREATE TRIGGER settings_profile_stale AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON crm.settings FOR EACH STATEMENT EXECUTE FUNCTION crm.profile_stale_all();

-- The profile read: the cached document of p_id's survivor when it is still
-- good, else built (crm.profile, or the gone document of an erased customer)
-- and stored. On a streaming replica nothing is stored; the replica serves
-- what the primary's cache holds and builds the rest. No audit row here: the
-- server writes read-audit rows in batches (crm.audit_reads).
CREATE FUNCTION crm.cached_profile(p_id uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    sid uuid := crm.survivor_of(p_id);
    c record;
    doc jsonb;
BEGIN
    IF sid IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT pc.doc, pc.version, pc.epoch = e.epoch AS current_epoch, pc.valid_until,
           e.epoch AS epoch
      INTO c
      FROM crm.profile_cache_epoch e LEFT JOIN crm.profile_cache pc ON pc.customer_id = sid;
    IF c.doc IS NOT NULL AND c.current_epoch AND (c.valid_until IS NULL OR c.valid_until > now()) THEN
        doc := c.doc;
    ELSE
        doc := coalesce(crm.gone_doc(sid), crm.profile(sid));
        IF doc IS NOT NULL AND NOT pg_is_in_recovery() THEN
            PERFORM crm.profile_cache_store(sid, c.version, c.epoch, doc);
        END IF;
    END IF;
    IF sid <> p_id AND NOT (doc ? 'gone') THEN
        doc := doc || jsonb_build_object('requested_id', p_id, 'merged_into', sid);
    END IF;
    RETURN doc;
END $$;

CREATE FUNCTION crm.profile_cache_store(p_customer uuid, p_version bigint, p_epoch bigint,
                                        p_doc jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    until timestamptz := (SELECT min(occurred_at) FROM crm.consent_events
                           WHERE customer_id = p_customer AND occurred_at > now());
BEGIN
    -- The document is a cache: its row need not survive a crash, and the
    -- read should not wait for a WAL flush.
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_version IS NULL THEN
        INSERT INTO crm.profile_cache (customer_id, version, epoch, doc, valid_until)
        VALUES (p_customer, 0, p_epoch, p_doc, until)
        ON CONFLICT (customer_id) DO NOTHING;
    ELSE
        UPDATE crm.profile_cache SET doc = p_doc, epoch = p_epoch, valid_until = until
         WHERE customer_id = p_customer AND version = p_version;
    END IF;
END $$;

-- Read-audit rows, batched by the server: p_rows is a JSON array of
-- {at, key_id, role, action, customer_id}. Returns the number written.
CREATE FUNCTION crm.audit_reads(p_rows jsonb) RETURNS jsonb
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
