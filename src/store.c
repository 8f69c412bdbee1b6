/*
 * store: each API operation is one prepared statement calling a crm.* SQL
 * function that does the work in one transaction and answers with JSON.
 * A batch is one call of crm.ingest_batch (set-based); only if that fails
 * does it run the ingest statement once per item inside one transaction,
 * with a savepoint per item, so that one failing item does not take the
 * others with it.
 */
#include "store.h"

#include "cases.h"
#include "jsontext.h"
#include "log.h"
#include "metrics.h"
#include "normalize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A duplicate answer acknowledges a row that another transaction committed,
 * which may not have reached the synchronous standby yet: committed locally
 * on a primary that then crashed and was restarted by its HA keeper before
 * being demoted (tests/ha: the row was lost on failover although the retry
 * had answered "duplicate"). A transactional logical message makes this
 * transaction write WAL after that row's commit, and PostgreSQL makes a
 * commit that wrote WAL wait for the synchronous standby (a transaction id
 * alone does not: RecordTransactionCommit waits only if WAL was written
 * before the commit record), so the answer is only given once the row is as
 * durable as a created one. The function is volatile: evaluated only in the
 * WHEN reached, never folded away. */
#define DURABLE_DUPLICATE(doc, has_duplicate)                                              \
    "SELECT CASE WHEN (" has_duplicate ") IS NOT TRUE THEN " doc                           \
    " WHEN pg_logical_emit_message(true, 'crm.duplicate', '') IS NOT NULL THEN " doc " END"
#define INGEST_SQL                                                                         \
    DURABLE_DUPLICATE("d", "d->>'status' = 'duplicate'")                                  \
    " FROM crm.ingest($1::uuid, $2::jsonb, $3::uuid, $4::uuid, $5, $6, $7, $8, "           \
    "$9::timestamptz, $10::numeric, $11, $12::numeric, "                                   \
    "ARRAY(SELECT jsonb_array_elements_text($13::jsonb)), $14::jsonb, $15::smallint, "     \
    "$16::smallint, $17::smallint, $18::uuid, $19) AS d"

const struct db_statement store_statements[STMT_COUNT] = {
    [STMT_PING] = {"ping", "SELECT '1'::json"},
    [STMT_RESOLVE] = {"resolve", "SELECT crm.resolve_customer($1::jsonb, $2::jsonb, $3, $4::uuid)"},
    /* Profile, lookup and timeline reads write no audit row themselves (the
     * server batches them, see audit.h), so a replica can answer them. */
    /* The document's text is passed on as the response body, unparsed; the
     * fields the server needs come as columns of their own. */
    [STMT_PROFILE] = {"profile", "SELECT d::text, d->>'customer_id', d->>'merged_into', (d ? 'gone')::text "
                "FROM (SELECT doc AS d FROM crm.profile_read WHERE customer_id = $1::uuid "
                "OFFSET 0) AS x"},
    /* A subquery, not a join: joined, the planner may build the view's doc
     * (a volatile call on a miss) for every customer before matching. */
    [STMT_LOOKUP] = {"lookup", "SELECT d::text, d->>'customer_id', d->>'merged_into', (d ? 'gone')::text "
               "FROM (SELECT (SELECT r.doc FROM crm.profile_read r "
               "WHERE r.customer_id = i.customer_id) AS d FROM crm.identifiers i "
               "WHERE i.kind = $1 AND i.namespace = $2 AND i.value = $3 OFFSET 0) AS x"},
    [STMT_AUDIT_READS] = {"audit_reads", "SELECT crm.audit_reads($1::jsonb)"},
    [STMT_INGEST_BATCH] = {"ingest_batch",
     DURABLE_DUPLICATE("b", "jsonb_path_exists(b, '$[*] ? (@.status == \"duplicate\")')")
     " FROM crm.ingest_batch($1::jsonb) AS b"},
    [STMT_AUTHENTICATE] = {"authenticate", "SELECT crm.authenticate($1::uuid, $2)"},
    [STMT_KEY_CREATE] = {"key_create", "SELECT crm.create_key_shared($1::uuid, $2, $3, $4, $5, $6::uuid, $7::jsonb)"},
    [STMT_KEY_LIST] = {"key_list", "SELECT jsonb_build_object('items', coalesce(jsonb_agg(crm.key_doc(k) "
                 "|| jsonb_strip_nulls(jsonb_build_object('shared_fields', to_jsonb(k.shared_fields))) "
                 "ORDER BY k.created_at), '[]')) FROM crm.api_keys k"},
    [STMT_KEY_REVOKE] = {"key_revoke", "SELECT crm.revoke_key($1::uuid, $2::uuid)"},
    /* GET /v1/me: read afresh, so a key revoked anywhere is told at once */
    [STMT_KEY_ME] = {"key_me", "SELECT jsonb_strip_nulls(jsonb_build_object('key_id', key_id, "
                 "'name', name, 'role', role, 'namespace', namespace)) FROM crm.api_keys "
                 "WHERE key_id = $1::uuid AND revoked_at IS NULL"},
    [STMT_PATCH_TRAITS] = {"patch_traits", "SELECT crm.patch_traits($1::uuid, $2::jsonb, $3)"},
    [STMT_INGEST] = {"ingest", INGEST_SQL},
    /* Live membership (sql/functions/membership.sql): the compiled rule is
     * stored with its parameters and dependencies, and the members are
     * computed in the same transaction. */
    [STMT_SEGMENT_CREATE] = {"segment_create",
     "SELECT crm.segment_save($1::uuid, true, $2, true, $3, $4::jsonb, $5, "
     "ARRAY(SELECT jsonb_array_elements_text($6::jsonb)), "
     "ARRAY(SELECT jsonb_array_elements_text($7::jsonb)), $8::int)"},
    [STMT_SEGMENT_UPDATE] = {"segment_update",
     "SELECT crm.segment_save($1::uuid, false, $2, $3::boolean, $4, $5::jsonb, $6, "
     "ARRAY(SELECT jsonb_array_elements_text($7::jsonb)), "
     "ARRAY(SELECT jsonb_array_elements_text($8::jsonb)), $9::int)"},
    [STMT_CUSTOMER_SEGMENTS] = {"customer_segments",
     "SELECT crm.customer_segment_history($1::uuid, $2::uuid, $3, $4::int)"},
    [STMT_SEGMENT_GET] = {"segment_get",
     "SELECT crm.segment_doc(s) FROM crm.segments s WHERE segment_id = $1::uuid"},
    [STMT_SEGMENT_LIST] = {"segment_list",
     "SELECT jsonb_build_object('items', coalesce(jsonb_agg(crm.segment_doc(s) ORDER BY name), "
     "'[]')) FROM crm.segments s"},
    [STMT_SEGMENT_DELETE] = {"segment_delete", "SELECT crm.segment_delete($1::uuid)"},
    [STMT_MERGE_HISTORY] = {"merge_history", "SELECT coalesce(crm.gone_doc($1::uuid), "
                      "(SELECT crm.merge_history($1::uuid) "
                      "FROM (SELECT crm.audit_read($2::uuid, $3, 'customer.merges', $1::uuid) "
                      "WHERE crm.survivor_of($1::uuid) IS NOT NULL) AS a))"},
    [STMT_MANUAL_MERGE] = {"manual_merge", "SELECT crm.manual_merge($1::uuid, $2::uuid, $3, $4, $5::boolean, $6::boolean)"},
    [STMT_UNMERGE] = {"unmerge", "SELECT crm.unmerge($1::uuid, $2, $3)"},
    [STMT_BLOCKED_LIST] = {"blocked_list",
     "SELECT jsonb_build_object('items', coalesce(jsonb_agg(jsonb_build_object('kind', kind, "
     "'value', value, 'pattern', pattern, 'reason', reason, 'builtin', builtin, "
     "'created_at', crm.ts(created_at)) ORDER BY kind, value), '[]')) FROM crm.blocked_identifiers"},
    [STMT_BLOCKED_ADD] = {"blocked_add", "SELECT crm.block_identifier($1, $2, $3, $4::boolean)"},
    [STMT_BLOCKED_REMOVE] = {"blocked_remove",
     "WITH d AS (DELETE FROM crm.blocked_identifiers WHERE kind = $1 AND value = $2 RETURNING 1) "
     "SELECT jsonb_build_object('deleted', EXISTS (SELECT 1 FROM d))"},
    [STMT_LIMITS_GET] = {"limits_get",
     "SELECT jsonb_build_object('items', coalesce(jsonb_agg(jsonb_build_object('kind', kind, "
     "'max_per_customer', max_per_customer, 'priority', priority) ORDER BY priority), '[]')) "
     "FROM crm.identifier_limits"},
    [STMT_LIMITS_SET] = {"limits_set",
     "UPDATE crm.identifier_limits SET max_per_customer = coalesce($2::int, max_per_customer), "
     "priority = coalesce($3::int, priority) WHERE kind = $1 "
     "RETURNING jsonb_build_object('kind', kind, 'max_per_customer', max_per_customer, "
     "'priority', priority)"},
    [STMT_CONFLICTS_LIST] = {"conflicts_list",
     "SELECT jsonb_build_object('items', coalesce(jsonb_agg(jsonb_build_object("
     "'conflict_id', conflict_id, 'at', crm.ts(at), 'source', source, 'reason', reason, "
     "'customer_ids', to_jsonb(customer_ids), 'identifiers', identifiers, 'detail', detail) "
     "ORDER BY conflict_id DESC), '[]')) FROM (SELECT * FROM crm.identity_conflicts "
     "ORDER BY conflict_id DESC LIMIT $1::int) AS c"},
    /* Customize (sql/functions/customize.sql); erased customers answer {"gone": true, ...}. */
    [STMT_PREFERENCES_GET] = {"preferences_get", "SELECT crm.read_customize($1::uuid, $2::uuid, $3, 'preferences')"},
    [STMT_PREFERENCES_PATCH] = {"preferences_patch", "SELECT crm.patch_preferences($1::uuid, $2::jsonb, $3)"},
    [STMT_CONSENTS_GET] = {"consents_get", "SELECT crm.read_customize($1::uuid, $2::uuid, $3, 'consents')"},
    [STMT_CONSENT_RECORD] = {"consent_record", "SELECT crm.record_consent($1::uuid, $2, $3, $4, $5, $6::timestamptz)"},
    [STMT_CONTACT_DECISION] = {"contact_decision", "SELECT crm.contact_decision($1::uuid, $2, $3, $4::timestamptz)"},
    [STMT_MOMENTS] = {"moments", "SELECT crm.moments($1, $2::timestamptz, $3::int, $4::int, $5::date, $6::uuid, "
                "$7::uuid, $8, $9, NULL)"},
    /* Today is the UTC date: only the bound on $1 depends on it. */
    [STMT_MOMENTS_RUN] = {"moments_run", "SELECT crm.moments_run($1::date, "
                    "(now() AT TIME ZONE 'UTC')::date)"},
    [STMT_CUSTOMER_EXPORT] = {"customer_export", "SELECT crm.export_customer($1::uuid, $2::uuid, $3)"},
    [STMT_CUSTOMER_ERASE] = {"customer_erase", "SELECT crm.erase_customer($1::uuid, $2::uuid, $3)"},
    /* Erased: the gone document; unknown: NULL. */
    [STMT_TIMELINE] = {"timeline", "SELECT coalesce(crm.gone_doc($1::uuid), "
                 "crm.timeline($1::uuid, $2::int, $3::timestamptz, $4::uuid, $5, $6, "
                 "$7::timestamptz, $8::timestamptz))"},
    /* Audiences (sql/011_audiences.sql): one audit row per segment export. */
    [STMT_SEGMENT_EXPORT_AUDIT] = {"segment_export_audit",
     "SELECT crm.audit_segment_export($1::uuid, $2, $3::uuid, $4, $5, $6::jsonb, $7, "
     "$8::bigint, $9::boolean)"},
    [STMT_SEGMENT_EXPORT_AUDIT_ADD] = {"segment_export_audit_add",
     "SELECT crm.audit_segment_export_add($1::bigint, $2::bigint, $3::boolean)"},
    /* A partner key's read of a customer: NULL unless shared (and audited). */
    [STMT_PARTNER_CUSTOMER] = {"partner_customer", "SELECT crm.partner_customer($1::uuid, $2::uuid)"},
    /* Activation (sql/010_activation.sql). */
    [STMT_EVENT_FEED] = {"event_feed", "SELECT crm.event_feed($1::xid8, $2::bigint, $3::text[], "
                    "$4::int, $5::int)"},
    /* A segment filter must name a segment: no row when it does not. */
    [STMT_WEBHOOK_CREATE] = {"webhook_create",
     "INSERT INTO crm.webhooks (webhook_id, url, event_types, enabled, description, secret, "
     "segment_id) SELECT $1::uuid, $2, $3::text[], $4::boolean, $5, $6, $7::uuid "
     "WHERE $7::uuid IS NULL OR EXISTS (SELECT 1 FROM crm.segments WHERE segment_id = $7::uuid) "
     "RETURNING crm.webhook_doc(webhooks)"},
    [STMT_WEBHOOK_LIST] = {"webhook_list",
     "SELECT jsonb_build_object('items', coalesce(jsonb_agg(crm.webhook_doc(w) "
     "ORDER BY w.created_at, w.webhook_id), '[]')) FROM crm.webhooks w"},
    [STMT_WEBHOOK_GET] = {"webhook_get",
     "SELECT crm.webhook_doc(w) FROM crm.webhooks w WHERE webhook_id = $1::uuid"},
    /* $3: whether event_types is given ($4 NULL then means every type). */
    /* {"no_segment": true} when the new segment filter names no segment. */
    [STMT_WEBHOOK_UPDATE] = {"webhook_update",
     "WITH ok AS (SELECT NOT $7::boolean OR $8::uuid IS NULL OR EXISTS (SELECT 1 FROM "
     "crm.segments WHERE segment_id = $8::uuid) AS ok), "
     "u AS (UPDATE crm.webhooks SET url = coalesce($2, url), "
     "event_types = CASE WHEN $3::boolean THEN $4::text[] ELSE event_types END, "
     "enabled = coalesce($5::boolean, enabled), description = coalesce($6, description), "
     "segment_id = CASE WHEN $7::boolean THEN $8::uuid ELSE segment_id END, "
     "updated_at = clock_timestamp() WHERE webhook_id = $1::uuid AND (SELECT ok FROM ok) "
     "RETURNING crm.webhook_doc(webhooks) AS d) "
     "SELECT CASE WHEN (SELECT ok FROM ok) THEN (SELECT d FROM u) "
     "ELSE '{\"no_segment\": true}'::jsonb END"},
    [STMT_WEBHOOK_DELETE] = {"webhook_delete",
     "WITH d AS (DELETE FROM crm.webhooks WHERE webhook_id = $1::uuid RETURNING 1) "
     "SELECT jsonb_build_object('deleted', EXISTS (SELECT 1 FROM d))"},
    [STMT_WEBHOOK_DELIVERIES] = {"webhook_deliveries",
     "SELECT crm.webhook_deliveries_doc($1::uuid, $2, $3::int)"},
    [STMT_WEBHOOK_REPLAY] = {"webhook_replay", "SELECT crm.webhook_replay($1::uuid, $2::bigint)"},
    [STMT_VALUE_RUNS] = {"value_runs", "SELECT crm.value_runs($1::bigint, $2::int)"},
    [STMT_VALUE_SETTINGS_GET] = {"value_settings_get", "SELECT crm.value_settings_doc()"},
    [STMT_VALUE_SCHEDULE_CLAIM] = {"value_schedule_claim",
        "SELECT to_jsonb(crm.value_schedule_claim($1::int, $2))"},
    [STMT_VALUE_SETTINGS_PATCH] = {"value_settings_patch",
        "SELECT crm.patch_value_settings($1::jsonb, $2::uuid, $3)"},
    /* Cases (sql/functions/cases.sql); erased customers answer {"gone": true, ...}. */
    [STMT_CASE_CREATE] = {"case_create", "SELECT crm.case_open($1::uuid, $2::uuid, $3, $4, $5, $6, "
                    "$7, $8::uuid, $9::timestamptz)"},
    [STMT_CASE_LIST] = {"case_list", "SELECT crm.customer_cases($1::uuid, $2, $3::int, $4::uuid, $5)"},
    [STMT_CASE_GET] = {"case_get", "SELECT crm.case_read($1::uuid, $2::uuid, $3)"},
    [STMT_CASE_PATCH] = {"case_patch", "SELECT crm.case_patch($1::uuid, $2::jsonb, $3::text[])"},
    [STMT_IDENTIFIER_DETACH] = {"identifier_detach",
     "SELECT crm.detach_identifier($1::uuid, $2::jsonb, $3, $4::uuid, $5, $6, $7::boolean)"},
    [STMT_NEVER_MERGE_LIST] = {"never_merge_list", "SELECT crm.never_merge_list($1::uuid)"},
    [STMT_NEVER_MERGE_ADD] = {"never_merge_add",
     "SELECT crm.never_merge_add($1::uuid, $2::uuid, $3, $4)"},
    [STMT_NEVER_MERGE_REMOVE] = {"never_merge_remove",
     "SELECT crm.never_merge_remove($1::uuid, $2::uuid)"},
    /* The agent's summary (sql/functions/summary.sql): $2 the consent
     * purposes as consent_purpose_list() writes them ("a, b"). */
    [STMT_SUMMARY] = {"summary", "SELECT crm.customer_summary($1::uuid, "
                "string_to_array($2, ', '), NULL)"},
    [STMT_NBA_SETTINGS_GET] = {"nba_settings_get", "SELECT crm.nba_settings_doc()"},
    [STMT_NBA_SETTINGS_PUT] = {"nba_settings_put",
        "SELECT crm.nba_settings_replace($1::jsonb, $2::uuid, $3)"},
    /* Personal-date moment kinds (sql/functions/customize.sql, docs/customize.md) */
    [STMT_MOMENT_SETTINGS_GET] = {"moment_settings_get", "SELECT crm.moment_settings_doc()"},
    [STMT_MOMENT_SETTINGS_PUT] = {"moment_settings_put",
        "SELECT crm.put_moment_settings($1::jsonb, $2::uuid, $3)"},
    [STMT_MOMENT_TRAIT_ERRORS] = {"moment_trait_errors",
        "SELECT coalesce(crm.moment_trait_errors($1::jsonb), '[]')"},
    /* Currency rates (sql/functions/value.sql, docs/value.md "Currencies") */
    [STMT_FX_RATES_GET] = {"fx_rates_get", "SELECT crm.fx_rates_doc()"},
    [STMT_FX_RATES_PUT] = {"fx_rates_put", "SELECT crm.put_fx_rates($1::jsonb, $2::uuid, $3)"},
    /* Survivorship rules (sql/functions/survivorship.sql). */
    [STMT_SURVIVORSHIP_GET] = {"survivorship_get", "SELECT crm.survivorship_doc()"},
    [STMT_SURVIVORSHIP_PUT] = {"survivorship_put",
        "SELECT crm.put_survivorship($1::jsonb, $2::uuid, $3)"},
    [STMT_LOOKALIKE_NEEDS] = {"lookalike_needs", "SELECT crm.lookalike_top_needs($1::uuid, $2::integer)"},
    [STMT_LOOKALIKE_FIT_GET] = {"lookalike_fit_get",
        "SELECT crm.lookalike_fit_get($1::uuid, $2::integer)"},
    [STMT_LOOKALIKE_FIT_SAVE] = {"lookalike_fit_save",
        "SELECT crm.lookalike_fit_save($1::uuid, $2::jsonb)"},
};
const int store_statement_count = STMT_COUNT;

enum db_status store_call(struct db_pool *pool, enum store_stmt stmt, int nparams,
                          const char *const *params, json_t **out, char *err, size_t errlen)
{
    return db_call_json(pool, store_statements[stmt].name, nparams, params, out, err, errlen);
}

enum db_status store_ping(struct db_pool *pool, char *err, size_t errlen)
{
    json_t *out = NULL;
    enum db_status st = store_call(pool, STMT_PING, 0, NULL, &out, err, errlen);
    json_decref(out);
    return st;
}

enum db_status store_resolve(struct db_pool *pool, const struct resolve_request *req,
                             json_t **out, char *err, size_t errlen)
{
    char new_id[UUID_TEXT_LEN + 1];
    json_t *ids = identifiers_to_db_json(&req->ids);
    char *ids_text = json_dumps(ids, JSON_COMPACT);
    char *traits_text = req->traits ? json_dumps(req->traits, JSON_COMPACT) : NULL;
    const char *params[4];
    enum db_status st;

    uuid_new(new_id);
    params[0] = ids_text;
    params[1] = traits_text;
    params[2] = req->source;
    params[3] = new_id;
    st = store_call(pool, STMT_RESOLVE, 4, params, out, err, errlen);
    free(ids_text);
    free(traits_text);
    json_decref(ids);
    return st;
}

/* The row of the profile statements into a profile_text. */
static enum db_status profile_row(struct db_pool *pool, enum store_stmt stmt, int nparams,
                                  const char *const *params, struct profile_text *out, char *err,
                                  size_t errlen)
{
    char *cols[4];
    enum db_status st = db_call_row(pool, store_statements[stmt].name, nparams, params, 4, cols,
                                    err, errlen);
    out->doc = cols[0];
    out->customer_id = cols[1];
    out->merged_into = cols[2];
    out->gone = cols[3] != NULL && strcmp(cols[3], "true") == 0;
    free(cols[3]);
    return st;
}

void profile_text_clear(struct profile_text *p)
{
    free(p->doc);
    free(p->customer_id);
    free(p->merged_into);
    memset(p, 0, sizeof(*p));
}

enum db_status store_profile(struct db_pool *pool, const char *customer_id,
                             struct profile_text *out, char *err, size_t errlen)
{
    const char *params[1] = {customer_id};
    return profile_row(pool, STMT_PROFILE, 1, params, out, err, errlen);
}

enum db_status store_lookup(struct db_pool *pool, const struct identifier *id,
                            struct profile_text *out, char *err, size_t errlen)
{
    const char *params[3] = {id_kind_name(id->kind), id->namespace_, id->value};
    return profile_row(pool, STMT_LOOKUP, 3, params, out, err, errlen);
}

enum db_status store_patch_traits(struct db_pool *pool, const char *customer_id,
                                  const struct traits_request *req, json_t **out, char *err,
                                  size_t errlen)
{
    char *traits_text = json_dumps(req->traits, JSON_COMPACT);
    const char *params[3] = {customer_id, traits_text, req->source};
    enum db_status st = store_call(pool, STMT_PATCH_TRAITS, 3, params, out, err, errlen);
    free(traits_text);
    return st;
}

/* The 19 parameters of the ingest statement; free with ingest_params_free. */
#define INGEST_PARAMS 19
struct ingest_params {
    char new_customer[UUID_TEXT_LEN + 1];
    char interaction_id[UUID_TEXT_LEN + 1];
    char *ids_text, *tags_text, *payload_text;
    char scores[SCORE_KINDS][12];
    const char *values[INGEST_PARAMS];
};

static void ingest_params_init(struct ingest_params *p, const struct interaction_request *req)
{
    json_t *ids = NULL;
    memset(p, 0, sizeof(*p));
    uuid_new(p->new_customer);
    uuid_new_v7(p->interaction_id);
    if (!req->by_customer_id) {
        ids = identifiers_to_db_json(&req->ids);
        p->ids_text = json_dumps(ids, JSON_COMPACT);
        json_decref(ids);
    }
    p->tags_text = json_dumps(req->tags, JSON_COMPACT);
    p->payload_text = req->payload ? json_dumps(req->payload, JSON_COMPACT) : NULL;
    p->values[0] = req->by_customer_id ? req->customer_id : NULL;
    p->values[1] = p->ids_text;
    p->values[2] = p->new_customer;
    p->values[3] = p->interaction_id;
    p->values[4] = req->source;
    p->values[5] = req->external_id;
    p->values[6] = req->channel;
    p->values[7] = req->type;
    p->values[8] = req->occurred_at;
    p->values[9] = req->has_amount ? req->amount : NULL;
    p->values[10] = req->currency[0] ? req->currency : NULL;
    p->values[11] = req->has_cost ? req->cost : NULL;
    p->values[12] = p->tags_text;
    p->values[13] = p->payload_text;
    for (int k = 0; k < SCORE_KINDS; k++) { /* $15 nps, $16 csat, $17 ces */
        if (req->scores[k] < 0)
            continue;
        snprintf(p->scores[k], sizeof(p->scores[k]), "%d", req->scores[k]);
        p->values[14 + k] = p->scores[k];
    }
    /* $18 the case it names, $19 what it does to a case (cases.h) */
    p->values[17] = req->case_id[0] ? req->case_id : NULL;
    p->values[18] = case_role_name(case_role_of(req->type, req->case_id[0] != '\0'));
}

static void ingest_params_free(struct ingest_params *p)
{
    free(p->ids_text);
    free(p->tags_text);
    free(p->payload_text);
}

enum db_status store_ingest(struct db_pool *pool, const struct interaction_request *req,
                            json_t **out, char *err, size_t errlen)
{
    struct ingest_params p;
    enum db_status st;
    ingest_params_init(&p, req);
    st = store_call(pool, STMT_INGEST, INGEST_PARAMS, p.values, out, err, errlen);
    ingest_params_free(&p);
    return st;
}

static bool run_simple(PGconn *pg, const char *sql)
{
    PGresult *res = PQexec(pg, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    return ok;
}

/* One attempt at the whole batch on one connection. Returns DB_OK when
 * committed; *retry says whether a failure is worth another attempt.
 * items_text is the batch as crm.ingest_batch reads it: crm.lock_batch takes
 * every lock the items need first, in the one lock order of
 * sql/007_identity_junk_and_lock_order.sql (if it fails, the items go on
 * without it and take their locks one by one, as before). */
static enum db_status batch_attempt(PGconn *pg, struct interaction_request *const *reqs, int count,
                                    const char *items_text, json_t **results, char *err,
                                    size_t errlen, bool *retry)
{
    PGresult *locks;
    *retry = false;
    if (!run_simple(pg, "BEGIN")) {
        *retry = true;
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
        return DB_UNAVAILABLE;
    }
    if (!run_simple(pg, "SAVEPOINT locks"))
        goto broken;
    locks = PQexecParams(pg, "SELECT crm.lock_batch($1::jsonb)", 1, NULL, &items_text, NULL,
                         NULL, 0);
    if (PQresultStatus(locks) != PGRES_TUPLES_OK) {
        log_msg(LOG_WARNING, "store", "batch locks: %s", PQresultErrorMessage(locks));
        PQclear(locks);
        if (PQstatus(pg) != CONNECTION_OK || !run_simple(pg, "ROLLBACK TO SAVEPOINT locks"))
            goto broken;
    } else {
        PQclear(locks);
    }
    for (int i = 0; i < count; i++) {
        struct ingest_params p;
        PGresult *res;
        if (reqs[i] == NULL)
            continue;
        for (int attempt = 0; attempt < 3; attempt++) {
            if (!run_simple(pg, "SAVEPOINT item"))
                goto broken;
            ingest_params_init(&p, reqs[i]);
            res = PQexecParams(pg, INGEST_SQL, INGEST_PARAMS, NULL, p.values, NULL, NULL, 0);
            ingest_params_free(&p);
            if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
                results[i] = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
                PQclear(res);
                if (!run_simple(pg, "RELEASE SAVEPOINT item"))
                    goto broken;
                break;
            }
            if (PQstatus(pg) != CONNECTION_OK) {
                PQclear(res);
                goto broken;
            }
            log_msg(LOG_WARNING, "store", "batch item %d: %s", i, PQresultErrorMessage(res));
            bool transient = db_error_is_transient(pg, res);
            PQclear(res);
            if (!run_simple(pg, "ROLLBACK TO SAVEPOINT item"))
                goto broken;
            if (!transient)
                break; /* results[i] stays NULL: reported as an internal error */
        }
    }
    if (run_simple(pg, "COMMIT"))
        return DB_OK;
broken:
    snprintf(err, errlen, "%s", PQerrorMessage(pg));
    run_simple(pg, "ROLLBACK");
    for (int i = 0; i < count; i++) {
        json_decref(results[i]);
        results[i] = NULL;
    }
    *retry = true;
    return DB_UNAVAILABLE;
}

static enum db_status ingest_itemwise(struct db_pool *pool, struct interaction_request *const *reqs,
                                      int count, const char *items_text, json_t **results,
                                      char *err, size_t errlen)
{
    enum db_status st = DB_UNAVAILABLE;
    snprintf(err, errlen, "database unavailable");
    for (int attempt = 0; attempt < 6; attempt++) {
        struct db_conn *conn;
        bool retry;
        if (attempt > 0)
            db_sleep_ms(50 << attempt);
        conn = db_acquire(pool, 5000);
        if (conn == NULL)
            continue;
        st = batch_attempt(db_pg(conn), reqs, count, items_text, results, err, errlen, &retry);
        db_release(pool, conn, st != DB_OK && PQstatus(db_pg(conn)) != CONNECTION_OK);
        if (st == DB_OK || !retry)
            return st;
    }
    return st;
}

/* One batch item as crm.ingest_batch reads it, appended to the batch's text. */
static void append_batch_item(struct jsontext *t, const struct interaction_request *req)
{
    char new_customer[UUID_TEXT_LEN + 1], interaction_id[UUID_TEXT_LEN + 1];
    const char *role;
    size_t i;
    json_t *tag;
    uuid_new(new_customer);
    uuid_new_v7(interaction_id);
    jsontext_raw(t, "{");
    jsontext_member(t, "new_customer_id", new_customer);
    jsontext_member(t, "interaction_id", interaction_id);
    jsontext_member(t, "source", req->source);
    jsontext_member(t, "external_id", req->external_id);
    jsontext_member(t, "channel", req->channel);
    jsontext_member(t, "type", req->type);
    jsontext_member(t, "occurred_at", req->occurred_at);
    jsontext_raw(t, ",\"tags\":[");
    json_array_foreach(req->tags, i, tag) {
        if (i > 0)
            jsontext_raw(t, ",");
        jsontext_string(t, json_string_value(tag));
    }
    jsontext_raw(t, "]");
    if (req->by_customer_id) {
        jsontext_member(t, "customer_id", req->customer_id);
    } else {
        jsontext_raw(t, ",\"identifiers\":[");
        for (int k = 0; k < req->ids.count; k++) {
            const struct identifier *id = &req->ids.items[k];
            jsontext_raw(t, k > 0 ? ",{" : "{");
            jsontext_member(t, "kind", id_kind_name(id->kind));
            jsontext_member(t, "value", id->value);
            if (identifier_raw_differs(id))
                jsontext_member(t, "raw", id->raw);
            if (id->namespace_[0] != '\0')
                jsontext_member(t, "namespace", id->namespace_);
            jsontext_raw(t, "}");
        }
        jsontext_raw(t, "]");
    }
    if (req->has_amount)
        jsontext_member(t, "amount", req->amount);
    if (req->has_cost)
        jsontext_member(t, "cost", req->cost);
    if (req->currency[0])
        jsontext_member(t, "currency", req->currency);
    if (req->payload != NULL)
        jsontext_member_json(t, "payload", req->payload);
    for (int k = 0; k < SCORE_KINDS; k++) {
        char num[12];
        if (req->scores[k] < 0)
            continue;
        snprintf(num, sizeof(num), "%d", req->scores[k]);
        jsontext_member(t, score_kind(k)->name, num); /* a string: SQL casts it */
    }
    role = case_role_name(case_role_of(req->type, req->case_id[0] != '\0'));
    if (req->case_id[0])
        jsontext_member(t, "case_id", req->case_id);
    if (role != NULL)
        jsontext_member(t, "case_role", role);
    jsontext_raw(t, "}");
}

enum db_status store_ingest_batch(struct db_pool *pool, struct interaction_request *const *reqs,
                                  int count, json_t **results, char *err, size_t errlen)
{
    json_t *out = NULL;
    int *index = calloc((size_t)count + 1, sizeof(*index)), sent = 0;
    struct jsontext items;
    char *text;
    enum db_status st;
    if (index == NULL) {
        snprintf(err, errlen, "out of memory");
        return DB_ERROR;
    }
    jsontext_init(&items);
    jsontext_raw(&items, "[");
    for (int i = 0; i < count; i++) {
        if (reqs[i] == NULL)
            continue;
        if (sent > 0)
            jsontext_raw(&items, ",");
        append_batch_item(&items, reqs[i]);
        index[sent++] = i;
    }
    jsontext_raw(&items, "]");
    text = jsontext_take(&items);
    if (sent == 0 || text == NULL) {
        free(text);
        free(index);
        if (sent == 0)
            return DB_OK;
        snprintf(err, errlen, "out of memory");
        return DB_ERROR;
    }
    st = store_call(pool, STMT_INGEST_BATCH, 1, (const char *const *)&text, &out, err, errlen);
    if (st == DB_OK && json_is_array(out) && json_array_size(out) == (size_t)sent) {
        for (int k = 0; k < sent; k++) {
            json_t *r = json_array_get(out, (size_t)k);
            results[index[k]] = json_is_object(r) ? json_incref(r) : NULL;
        }
    } else if (st != DB_UNAVAILABLE && st != DB_CANCELLED) {
        /* Some item makes the set-based statement fail: store item by item,
         * so that only that item fails. */
        log_msg(LOG_WARNING, "store", "batch of %d falls back to item by item: %s", sent,
                st == DB_OK ? "unexpected answer" : err);
        metrics_batch_fallback();
        st = ingest_itemwise(pool, reqs, count, text, results, err, errlen);
    }
    free(text);
    json_decref(out);
    free(index);
    return st;
}

enum db_status store_timeline(struct db_pool *pool, const char *customer_id,
                              const struct timeline_query *q, json_t **out, char *err,
                              size_t errlen)
{
    char limit[16];
    const char *params[8];
    snprintf(limit, sizeof(limit), "%d", q->limit);
    params[0] = customer_id;
    params[1] = limit;
    params[2] = q->cursor_at;
    params[3] = q->cursor_id;
    params[4] = q->channel;
    params[5] = q->type;
    params[6] = q->since;
    params[7] = q->until;
    return store_call(pool, STMT_TIMELINE, 8, params, out, err, errlen);
}
