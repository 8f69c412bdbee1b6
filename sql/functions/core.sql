-- core: helpers every domain uses (timestamps, settings, following merges,
-- erased customers).
--
-- Applied after the migrations at every start, inside the migration
-- transaction, in the order of meson.build's `functions` list: every
-- statement must be idempotent (CREATE OR REPLACE FUNCTION; DROP ... IF
-- EXISTS first when a signature or return type changes; triggers and views
-- through crm.define_trigger and crm.define_view, core.sql). One current
-- definition per object.

-- Follow merged_into to the surviving customer (merges flatten chains, so
-- this is at most one hop; the loop is defensive).
CREATE OR REPLACE FUNCTION crm.survivor_of(p_id uuid) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
    cur uuid := p_id;
    nxt uuid;
    found_row boolean;
BEGIN
    FOR i IN 1..16 LOOP
        SELECT merged_into, true INTO nxt, found_row FROM crm.customers WHERE customer_id = cur;
        IF found_row IS NULL THEN
            RETURN NULL;
        END IF;
        IF nxt IS NULL THEN
            RETURN cur;
        END IF;
        cur := nxt;
    END LOOP;
    RETURN cur;
END $$;

CREATE OR REPLACE FUNCTION crm.ts(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- The NPS category of a 0-10 answer: promoter 9-10, passive 7-8,
-- detractor 0-6 (NULL for none). Inlined where it is used.
CREATE OR REPLACE FUNCTION crm.nps_category(p_nps smallint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_nps >= 9 THEN 'promoter' WHEN p_nps >= 7 THEN 'passive'
                WHEN p_nps >= 0 THEN 'detractor' END
$$;

-- An interaction's scores as the API shows them: {nps?, csat?, ces?} with
-- the kinds it carries, or NULL when it carries none.
CREATE OR REPLACE FUNCTION crm.scores_doc(p_nps smallint, p_csat smallint, p_ces smallint)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_nps IS NOT NULL OR p_csat IS NOT NULL OR p_ces IS NOT NULL
                THEN jsonb_strip_nulls(jsonb_build_object('nps', p_nps, 'csat', p_csat,
                                                          'ces', p_ces)) END
$$;

CREATE OR REPLACE FUNCTION crm.setting(p_key text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT value FROM crm.settings WHERE key = p_key
    );
END $$;

-- ---- erasure guards -------------------------------------------------------

-- The opening of every function that answers for a customer given by id:
-- sid is the surviving customer of p_id (NULL: no such customer), gone the
-- answer for an erased customer (the server turns it into 410 Gone), NULL
-- when it is not erased. A caller opens with
--     SELECT o.sid, o.gone INTO sid, gone FROM crm.open_customer(p_id) AS o;
--     IF sid IS NULL OR gone IS NOT NULL THEN
--         RETURN gone;    -- NULL: not found; else the gone document
--     END IF;
-- (or tests only gone, when it locks the survivor afterwards).
CREATE OR REPLACE FUNCTION crm.open_customer(p_id uuid, OUT sid uuid, OUT gone jsonb)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    sid := crm.survivor_of(p_id);
    IF sid IS NOT NULL THEN
        SELECT jsonb_build_object('gone', true, 'customer_id', c.customer_id,
                                  'erased_at', crm.ts(c.erased_at))
          INTO gone
          FROM crm.customers c WHERE c.customer_id = sid AND c.erased_at IS NOT NULL;
    END IF;
END $$;

-- The gone document of p_id's survivor when it has been erased, else NULL
-- (crm.open_customer's gone; the timeline and merge-history statements of
-- src/store.c and crm.cached_profile use it).
CREATE OR REPLACE FUNCTION crm.gone_doc(p_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT o.gone FROM crm.open_customer(p_id) AS o);
END $$;

-- True when p_id (or the customer that absorbed it) has been erased.
CREATE OR REPLACE FUNCTION crm.is_erased(p_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT o.gone IS NOT NULL FROM crm.open_customer(p_id) AS o);
END $$;

-- ---- how triggers and views are defined in these files ---------------------

-- Functions are replaced at every start: CREATE OR REPLACE FUNCTION locks
-- no table. Replacing a trigger takes a SHARE ROW EXCLUSIVE lock on its
-- table and replacing a view an ACCESS EXCLUSIVE lock on it: at every start
-- that would queue the writes (or reads) of the servers already running
-- behind the start-up, and deadlock with them. So a trigger or a view is
-- (re)created only when its definition here differs from the one it was
-- created from, whose md5 is kept as the object's comment:
--     SELECT crm.define_trigger('name', 'crm.table', $def$
--         CREATE OR REPLACE TRIGGER name ... ON crm.table ... $def$);
--     SELECT crm.define_view('crm.name', $def$ CREATE OR REPLACE VIEW crm.name AS ... $def$);
CREATE OR REPLACE FUNCTION crm.define_trigger(p_name text, p_table regclass, p_definition text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    tag text := 'sql/functions md5:' || md5(p_definition);
BEGIN
    IF (SELECT obj_description(t.oid, 'pg_trigger') FROM pg_trigger t
         WHERE t.tgrelid = p_table AND t.tgname = p_name) IS NOT DISTINCT FROM tag THEN
        RETURN;
    END IF;
    EXECUTE p_definition;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = p_table AND t.tgname = p_name) THEN
        RAISE EXCEPTION 'crm.define_trigger: the definition does not create trigger % on %',
                        p_name, p_table;
    END IF;
    EXECUTE format('COMMENT ON TRIGGER %I ON %s IS %L', p_name, p_table, tag);
END $$;

CREATE OR REPLACE FUNCTION crm.define_view(p_view text, p_definition text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    tag text := 'sql/functions md5:' || md5(p_definition);
BEGIN
    IF obj_description(to_regclass(p_view), 'pg_class') IS NOT DISTINCT FROM tag THEN
        RETURN;
    END IF;
    EXECUTE p_definition;
    IF to_regclass(p_view) IS NULL THEN
        RAISE EXCEPTION 'crm.define_view: the definition does not create view %', p_view;
    END IF;
    EXECUTE format('COMMENT ON VIEW %s IS %L', p_view, tag);
END $$;
