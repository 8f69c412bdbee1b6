-- survivorship: which source's value of a trait is the trait (docs/identity.md,
-- "Survivorship"). crm.trait_values keeps every source's value of each trait
-- (written by crm.set_trait, identity.sql); crm.traits holds the winner, so
-- every reader of traits stays as it was. The rule of a trait name (or the
-- default, trait '*', or most_recent when neither is set) picks the winner:
-- most_recent (the value last given), source_priority (the first source of
-- an ordered list that has a value; sources not listed come after, most
-- recent first), most_frequent (the value most sources give; then the one
-- given more times in all; then the most recent), first_seen (the value held
-- longest). Ties fall to the most recent, then the source name. Here: the
-- winner query and its set-based writer, the rules' settings, merge and
-- unmerge of source values (as crm.merge_preferences does for preferences).
--
-- Applied after the migrations at every start, inside the migration
-- transaction, in the order of meson.build's `functions` list: every
-- statement must be idempotent (CREATE OR REPLACE FUNCTION; DROP ... IF
-- EXISTS first when a signature or return type changes; triggers and views
-- through crm.define_trigger and crm.define_view, core.sql). One current
-- definition per object.

-- The winning source value of each trait of p_customers (NULL: every
-- customer) whose name is in p_names (NULL: any) and not in p_not_names.
CREATE OR REPLACE FUNCTION crm.trait_winners(p_customers uuid[], p_names text[],
                                             p_not_names text[] DEFAULT NULL)
RETURNS TABLE (customer_id uuid, name text, source text, value jsonb, last_seen timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT ON (v.customer_id, v.name) v.customer_id, v.name, v.source, v.value, v.last_seen
      FROM (SELECT tv.*, count(*) OVER w AS n_sources, sum(tv.times_seen) OVER w AS n_times
              FROM crm.trait_values tv
             WHERE (p_customers IS NULL OR tv.customer_id = ANY (p_customers))
               AND (p_names IS NULL OR tv.name = ANY (p_names))
               AND (p_not_names IS NULL OR NOT tv.name = ANY (p_not_names))
            WINDOW w AS (PARTITION BY tv.customer_id, tv.name, tv.value)) AS v
      LEFT JOIN LATERAL (SELECT r.rule, r.sources FROM crm.survivorship_rules r
                          WHERE r.trait IN (v.name, '*') ORDER BY r.trait = '*' LIMIT 1) AS r ON true
     ORDER BY v.customer_id, v.name,
              CASE WHEN r.rule = 'source_priority'
                   THEN coalesce(array_position(r.sources, v.source), 2147483647) END,
              CASE WHEN r.rule = 'most_frequent' THEN -v.n_sources END,
              CASE WHEN r.rule = 'most_frequent' THEN -v.n_times END,
              CASE WHEN r.rule = 'first_seen' THEN v.first_seen END,
              v.last_seen DESC, v.source
$$;

-- Write the winners into crm.traits where they differ from what it holds
-- (value or source; the row's updated_at becomes the winner's last_seen).
-- Set-based: one statement for any number of customers. Returns the number
-- of trait rows changed.
CREATE OR REPLACE FUNCTION crm.resolve_traits(p_customers uuid[], p_names text[],
                                              p_not_names text[] DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO crm.traits AS t (customer_id, name, value, source, updated_at)
    SELECT w.customer_id, w.name, w.value, w.source, w.last_seen
      FROM crm.trait_winners(p_customers, p_names, p_not_names) AS w
      LEFT JOIN crm.traits cur ON cur.customer_id = w.customer_id AND cur.name = w.name
     WHERE cur.customer_id IS NULL OR (cur.value, cur.source) IS DISTINCT FROM (w.value, w.source)
     ORDER BY w.customer_id, w.name
    ON CONFLICT (customer_id, name) DO UPDATE
        SET value = excluded.value, source = excluded.source, updated_at = excluded.updated_at
        WHERE (t.value, t.source) IS DISTINCT FROM (excluded.value, excluded.source);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- The rule of a trait name: {"rule": ..., "sources": [...] for source_priority}.
CREATE OR REPLACE FUNCTION crm.survivorship_rule_doc(p_rule text, p_sources text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('rule', p_rule)
           || CASE WHEN p_rule = 'source_priority' THEN jsonb_build_object('sources', to_jsonb(p_sources))
                   ELSE '{}' END
$$;

-- The rules as GET /v1/settings/survivorship answers them.
CREATE OR REPLACE FUNCTION crm.survivorship_doc() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'default', coalesce((SELECT crm.survivorship_rule_doc(rule, sources)
                               FROM crm.survivorship_rules WHERE trait = '*'),
                            '{"rule": "most_recent"}'),
        'traits', coalesce((SELECT jsonb_object_agg(trait, crm.survivorship_rule_doc(rule, sources))
                              FROM crm.survivorship_rules WHERE trait <> '*'), '{}'))
$$;

-- Replace the rules (validated by the server, src/survivorship.c) and
-- re-resolve, in the same transaction and set-based, every trait whose
-- rule changed: the names whose own rule changed, and when the default
-- changed, every name without a rule of its own. Audited as
-- settings.survivorship.changed (before, after, traits_changed). Returns the
-- rules and traits_changed (trait rows whose winner changed).
CREATE OR REPLACE FUNCTION crm.put_survivorship(p_doc jsonb, p_key uuid, p_role text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    before jsonb;
    after jsonb;
    changed text[];
    explicit text[];
    n bigint := 0;
BEGIN
    LOCK TABLE crm.survivorship_rules IN SHARE ROW EXCLUSIVE MODE;  -- one change at a time
    before := crm.survivorship_doc();
    DELETE FROM crm.survivorship_rules;
    INSERT INTO crm.survivorship_rules (trait, rule, sources)
    SELECT '*', p_doc->'default'->>'rule',
           ARRAY(SELECT jsonb_array_elements_text(coalesce(p_doc->'default'->'sources', '[]')))
     WHERE p_doc->'default'->>'rule' IS NOT NULL AND p_doc->'default'->>'rule' <> 'most_recent';
    INSERT INTO crm.survivorship_rules (trait, rule, sources)
    SELECT t.key, t.value->>'rule',
           ARRAY(SELECT jsonb_array_elements_text(coalesce(t.value->'sources', '[]')))
      FROM jsonb_each(coalesce(p_doc->'traits', '{}')) AS t;
    after := crm.survivorship_doc();

    explicit := ARRAY(SELECT jsonb_object_keys(before->'traits')
                      UNION SELECT jsonb_object_keys(after->'traits'));
    changed := ARRAY(SELECT k FROM unnest(explicit) AS k
                      WHERE coalesce(before->'traits'->k, before->'default')
                            IS DISTINCT FROM coalesce(after->'traits'->k, after->'default'));
    IF before->'default' IS DISTINCT FROM after->'default' THEN
        n := crm.resolve_traits(NULL, NULL,
                                ARRAY(SELECT unnest(explicit) EXCEPT SELECT unnest(changed)));
    ELSIF cardinality(changed) > 0 THEN
        n := crm.resolve_traits(NULL, changed);
    END IF;
    IF after IS DISTINCT FROM before THEN
        -- every cached profile: trait_sources names the rule of a conflict
        UPDATE crm.profile_cache_epoch SET epoch = epoch + 1;
        PERFORM crm.audit(p_key, p_role, 'settings.survivorship.changed', NULL,
                          jsonb_build_object('before', before, 'after', after, 'traits_changed', n));
    END IF;
    RETURN after || jsonb_build_object('traits_changed', n);
END $$;

-- A customer's source values as a JSON array (merge snapshots).
CREATE OR REPLACE FUNCTION crm.trait_value_rows(p_customer uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('name', name, 'source', source, 'value', value,
                                                 'first_seen', first_seen, 'last_seen', last_seen,
                                                 'times_seen', times_seen)
                              ORDER BY name, source), '[]')
      FROM crm.trait_values WHERE customer_id = p_customer
$$;

-- The rows of a snapshot (crm.trait_value_rows) as trait_values rows of p_customer.
CREATE OR REPLACE FUNCTION crm.trait_value_snapshot(p_customer uuid, p_rows jsonb)
RETURNS SETOF crm.trait_values LANGUAGE sql IMMUTABLE AS $$
    SELECT p_customer, r->>'name', r->>'source', r->'value', (r->>'first_seen')::timestamptz,
           (r->>'last_seen')::timestamptz, (r->>'times_seen')::integer
      FROM jsonb_array_elements(p_rows) AS r
$$;

-- Merge (crm.merge_into): the survivor's source values become the union of
-- both sides' (one source's two values: the one it gave last; the same
-- value: seen since the earlier first_seen, as many times as both), and
-- each trait the absorbed side had is resolved again by the rules. Where
-- the absorbed side's own trait row wins it is taken over as it was (so an
-- unmerge recognises it, crm.restore_snapshot). The absorbed customer keeps
-- no trait rows.
CREATE OR REPLACE FUNCTION crm.merge_traits(p_survivor uuid, p_absorbed uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    names text[];
BEGIN
    names := ARRAY(SELECT DISTINCT name FROM crm.trait_values WHERE customer_id = p_absorbed
                   UNION SELECT name FROM crm.traits WHERE customer_id = p_absorbed);
    INSERT INTO crm.trait_values AS t (customer_id, name, source, value, first_seen, last_seen,
                                       times_seen)
    SELECT p_survivor, name, source, value, first_seen, last_seen, times_seen
      FROM crm.trait_values WHERE customer_id = p_absorbed
     ORDER BY name, source
    ON CONFLICT (customer_id, name, source) DO UPDATE SET
        value = CASE WHEN excluded.last_seen > t.last_seen THEN excluded.value ELSE t.value END,
        first_seen = CASE WHEN excluded.value = t.value THEN least(t.first_seen, excluded.first_seen)
                          WHEN excluded.last_seen > t.last_seen THEN excluded.first_seen
                          ELSE t.first_seen END,
        times_seen = CASE WHEN excluded.value = t.value THEN t.times_seen + excluded.times_seen
                          WHEN excluded.last_seen > t.last_seen THEN excluded.times_seen
                          ELSE t.times_seen END,
        last_seen = greatest(t.last_seen, excluded.last_seen);
    DELETE FROM crm.trait_values WHERE customer_id = p_absorbed;

    INSERT INTO crm.traits AS t (customer_id, name, value, source, updated_at)
    SELECT p_survivor, a.name, a.value, a.source, a.updated_at
      FROM crm.traits a
      JOIN crm.trait_winners(ARRAY[p_survivor], names) AS w
        ON w.name = a.name AND w.value = a.value AND w.source = a.source
     WHERE a.customer_id = p_absorbed
     ORDER BY a.name
    ON CONFLICT (customer_id, name) DO UPDATE
        SET value = excluded.value, source = excluded.source, updated_at = excluded.updated_at
        WHERE (t.value, t.source) IS DISTINCT FROM (excluded.value, excluded.source);
    PERFORM crm.resolve_traits(ARRAY[p_survivor], names);
    -- A trait row without any source value (none is written so since
    -- sql/021_survivorship.sql backfilled them): the later written wins.
    INSERT INTO crm.traits AS t (customer_id, name, value, source, updated_at)
    SELECT p_survivor, a.name, a.value, a.source, a.updated_at
      FROM crm.traits a
     WHERE a.customer_id = p_absorbed
       AND NOT EXISTS (SELECT 1 FROM crm.trait_values v
                        WHERE v.customer_id = p_survivor AND v.name = a.name)
    ON CONFLICT (customer_id, name) DO UPDATE
        SET value = excluded.value, source = excluded.source, updated_at = excluded.updated_at
        WHERE excluded.updated_at > t.updated_at;
    DELETE FROM crm.traits WHERE customer_id = p_absorbed;
END $$;

-- Every merge snapshots both sides' source values before anything moves
-- (an AFTER INSERT trigger on crm.merges runs before crm.merge_into goes on).
CREATE OR REPLACE FUNCTION crm.merge_trait_values_snapshot() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.merge_trait_values (merge_id, absorbed_values, survivor_values)
    VALUES (NEW.merge_id, crm.trait_value_rows(NEW.absorbed_id),
            crm.trait_value_rows(NEW.survivor_id));
    RETURN NULL;
END $$;

SELECT crm.define_trigger('merges_trait_values', 'crm.merges', $def$
CREATE OR REPLACE TRIGGER merges_trait_values AFTER INSERT ON crm.merges
    FOR EACH ROW EXECUTE FUNCTION crm.merge_trait_values_snapshot()
$def$);

-- Unmerge (after crm.unmerge restored the trait rows): the absorbed side
-- gets its source values back as they were. On the survivor, for each
-- source value the absorbed side had brought: a value given after the
-- merge stays; a row that is the absorbed side's value (same value, same
-- last sighting) goes back to what the survivor's line had before (the
-- pre-merge snapshots of this merge and of the later merges up the chain,
-- the last given first), or away; a row that only counted the absorbed
-- side's sightings of the same value in gives them back. Later merges'
-- snapshots of the survivor forget what this merge brought (as
-- crm.forget_in_later_snapshots does for trait rows). Both sides are then
-- resolved again, which changes nothing when nothing happened since the
-- merge.
CREATE OR REPLACE FUNCTION crm.unmerge_trait_values() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    snap crm.merge_trait_values%ROWTYPE;
    sid uuid := crm.survivor_of(NEW.survivor_id);
    cur uuid := NEW.survivor_id;
    later_id bigint;
    chain bigint[] := ARRAY[NEW.merge_id];
    k crm.trait_values%ROWTYPE;
    now_row crm.trait_values%ROWTYPE;
    other crm.trait_values%ROWTYPE;
BEGIN
    SELECT * INTO snap FROM crm.merge_trait_values WHERE merge_id = NEW.merge_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    LOOP
        SELECT merge_id INTO later_id FROM crm.merges
         WHERE absorbed_id = cur AND unmerged_at IS NULL AND merge_id > NEW.merge_id
         ORDER BY merge_id DESC LIMIT 1;
        EXIT WHEN NOT FOUND;
        chain := chain || later_id;
        cur := (SELECT survivor_id FROM crm.merges WHERE merge_id = later_id);
    END LOOP;

    FOR k IN SELECT * FROM crm.trait_value_snapshot(NEW.absorbed_id, snap.absorbed_values) LOOP
        SELECT * INTO now_row FROM crm.trait_values
         WHERE customer_id = sid AND name = k.name AND source = k.source;
        CONTINUE WHEN NOT FOUND OR now_row.last_seen > NEW.merged_at OR now_row.value <> k.value;
        other := NULL;
        SELECT s.* INTO other
          FROM crm.merge_trait_values mv, crm.trait_value_snapshot(sid, mv.survivor_values) AS s
         WHERE mv.merge_id = ANY (chain) AND s.name = k.name AND s.source = k.source
         ORDER BY s.last_seen DESC LIMIT 1;
        IF now_row.last_seen = k.last_seen THEN
            DELETE FROM crm.trait_values
             WHERE customer_id = sid AND name = k.name AND source = k.source;
            IF other.customer_id IS NOT NULL THEN
                INSERT INTO crm.trait_values VALUES (other.*);
            END IF;
        ELSE
            UPDATE crm.trait_values
               SET times_seen = greatest(times_seen - k.times_seen, 1),
                   first_seen = CASE WHEN first_seen = k.first_seen AND other.value = k.value
                                     THEN other.first_seen ELSE first_seen END
             WHERE customer_id = sid AND name = k.name AND source = k.source;
        END IF;
    END LOOP;
    INSERT INTO crm.trait_values
    SELECT * FROM crm.trait_value_snapshot(NEW.absorbed_id, snap.absorbed_values)
    ON CONFLICT (customer_id, name, source) DO NOTHING;

    UPDATE crm.merge_trait_values l SET absorbed_values = (
        SELECT coalesce(jsonb_agg(r ORDER BY r->>'name', r->>'source'), '[]') FROM (
            SELECT r FROM jsonb_array_elements(l.absorbed_values) AS r
             WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(snap.absorbed_values) AS a
                                WHERE a->>'name' = r->>'name' AND a->>'source' = r->>'source')
            UNION ALL
            SELECT s FROM jsonb_array_elements(snap.survivor_values) AS s
             WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(snap.absorbed_values) AS a
                            WHERE a->>'name' = s->>'name' AND a->>'source' = s->>'source')
        ) AS kept)
     WHERE l.merge_id = ANY (chain[2:]);

    PERFORM crm.resolve_traits(ARRAY[sid, NEW.absorbed_id], NULL);
    RETURN NULL;
END $$;

SELECT crm.define_trigger('merges_unmerge_trait_values', 'crm.merges', $def$
CREATE OR REPLACE TRIGGER merges_unmerge_trait_values AFTER UPDATE OF unmerged_at ON crm.merges
    FOR EACH ROW WHEN (OLD.unmerged_at IS NULL AND NEW.unmerged_at IS NOT NULL)
    EXECUTE FUNCTION crm.unmerge_trait_values()
$def$);

-- The profile shows the losing source values (crm.profile, trait_sources),
-- yet crm.trait_values has no profile-cache trigger: a trigger on it cost a
-- plpgsql call per source value written. Every writer makes the profile
-- stale instead: crm.set_trait (the trait row's own trigger when it
-- changes, else explicitly unless the value given is the winner's and
-- unchanged, which the profile does not show), merge and unmerge (their
-- crm.customers and crm.identifiers changes), erasure, and a rule change
-- (the cache epoch).

