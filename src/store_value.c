/*
 * store_value: segment and KPI queries. A compiled segment is a boolean SQL
 * expression over "c" (crm.customers) and "v" (crm.customer_value) using
 * parameters $1..$n; these functions wrap it in the page, count and KPI
 * queries and append their own parameters after the segment's.
 */
#include "store_value.h"

#include "jsontext.h"
#include "store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MEMBERS_FROM                                                                         \
    " FROM crm.customers c LEFT JOIN crm.customer_value v ON v.customer_id = c.customer_id " \
    "WHERE c.merged_into IS NULL AND c.erased_at IS NULL AND "

/* Segment parameters followed by extra ones, as a NULL-padded C array. */
static const char **params_with(const struct segment_sql *seg, int extra, int *count)
{
    size_t n = seg ? json_array_size(seg->params) : 0;
    const char **out = calloc(n + (size_t)extra + 1, sizeof(*out));
    for (size_t i = 0; i < n; i++)
        out[i] = json_string_value(json_array_get(seg->params, i)); /* NULL for json null */
    *count = (int)n + extra;
    return out;
}

static char *sql_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *sql_printf(const char *fmt, ...)
{
    va_list ap;
    char *out = NULL;
    va_start(ap, fmt);
    if (vasprintf(&out, fmt, ap) < 0)
        out = NULL;
    va_end(ap);
    return out;
}

enum db_status store_segment_save(struct db_pool *pool, const char *id, bool create,
                                  const char *name, bool set_description,
                                  const char *description, json_t *rule,
                                  const struct segment_sql *seg, json_t **out, char *err,
                                  size_t errlen)
{
    char *rule_text = rule ? json_dumps(rule, JSON_COMPACT) : NULL;
    char *condition = rule ? segment_stored_condition(seg->where) : NULL;
    char *params_text = rule ? json_dumps(seg->params, JSON_COMPACT) : NULL;
    json_t *deps = rule ? segment_depends_json(seg->depends) : NULL;
    char *deps_text = deps ? json_dumps(deps, JSON_COMPACT) : NULL;
    char version[16];
    enum db_status st;
    snprintf(version, sizeof(version), "%d", SEGMENT_COMPILER_VERSION);
    if (create) {
        const char *params[8] = {id, name, description, rule_text, condition, params_text,
                                 deps_text, version};
        st = store_call(pool, STMT_SEGMENT_CREATE, 8, params, out, err, errlen);
    } else {
        const char *params[9] = {id, name, set_description ? "true" : "false", description,
                                 rule_text, condition, params_text, deps_text, version};
        st = store_call(pool, STMT_SEGMENT_UPDATE, 9, params, out, err, errlen);
    }
    free(rule_text);
    free(condition);
    free(params_text);
    free(deps_text);
    json_decref(deps);
    return st;
}

enum db_status store_segment_get(struct db_pool *pool, const char *id, json_t **out, char *err,
                                 size_t errlen)
{
    const char *params[1] = {id};
    return store_call(pool, STMT_SEGMENT_GET, 1, params, out, err, errlen);
}

enum db_status store_segment_list(struct db_pool *pool, json_t **out, char *err, size_t errlen)
{
    return store_call(pool, STMT_SEGMENT_LIST, 0, NULL, out, err, errlen);
}

enum db_status store_segment_delete(struct db_pool *pool, const char *id, json_t **out,
                                    char *err, size_t errlen)
{
    const char *params[1] = {id};
    return store_call(pool, STMT_SEGMENT_DELETE, 1, params, out, err, errlen);
}

/* Parameters of a dynamic statement: the segment's, then the query's. */
struct param_list {
    const char **values;
    int count;
};

static int param_add(struct param_list *p, const char *value)
{
    p->values[p->count++] = value;
    return p->count;
}

/* " FROM ... WHERE <members> AND (<segment>)[ AND <contact allowed>]", with
 * the address of q's channel as a.address when q has a purpose. */
static void append_members_from(struct jsontext *sql, const struct segment_sql *seg,
                                const struct segment_page_query *q, struct param_list *p)
{
    jsontext_raw(sql, " FROM crm.customers c"
                      " LEFT JOIN crm.customer_value v ON v.customer_id = c.customer_id");
    if (q != NULL && q->purpose != NULL)
        jsontext_printf(sql, " CROSS JOIN LATERAL (SELECT crm.customer_address(c.customer_id,"
                             " $%d) AS address) AS a",
                        param_add(p, q->address_kind));
    jsontext_printf(sql, " WHERE c.merged_into IS NULL AND c.erased_at IS NULL AND (%s)",
                    seg->where);
    if (q != NULL && q->purpose != NULL) {
        int pu = param_add(p, q->purpose), ch = param_add(p, q->channel);
        int at = param_add(p, q->at);
        jsontext_printf(sql, " AND a.address IS NOT NULL"
                             " AND crm.contact_allowed(c.customer_id, $%d, $%d, $%d::timestamptz)",
                        pu, ch, at);
    }
}

static enum db_status query_text(struct db_pool *pool, struct jsontext *sql,
                                 const struct param_list *p, json_t **out, char *err,
                                 size_t errlen)
{
    char *text = jsontext_take(sql);
    enum db_status st;
    if (text == NULL) {
        snprintf(err, errlen, "out of memory");
        return DB_ERROR;
    }
    st = db_query_json(pool, text, p->count, p->values, out, err, errlen);
    free(text);
    return st;
}

enum db_status store_segment_page(struct db_pool *pool, const struct segment_sql *seg,
                                  const struct segment_page_query *q, json_t **out, char *err,
                                  size_t errlen)
{
    int nseg, lim, cid;
    struct param_list p;
    struct jsontext sql;
    char limit_text[16];
    enum db_status st;
    const char *order = q->by_clv ? "v.clv DESC NULLS LAST, c.customer_id" : "c.customer_id";

    p.values = params_with(seg, 9, &nseg);
    p.count = nseg - 9;
    snprintf(limit_text, sizeof(limit_text), "%d", q->limit);
    lim = param_add(&p, limit_text);
    cid = param_add(&p, q->cursor_id);

    jsontext_init(&sql);
    jsontext_printf(&sql, "WITH page AS (SELECT c.customer_id AS id, v.clv::text AS clv,"
                          " row_number() OVER (ORDER BY %s) AS rn, jsonb_build_object("
                          "'customer_id', c.customer_id", order);
    if (q->purpose != NULL)
        jsontext_raw(&sql, ", 'address', a.address");
    if (q->fields == 0) {
        jsontext_raw(&sql, ", 'tier', v.tier, 'clv', trim_scale(v.clv), 'p_alive', v.p_alive,"
                           " 'margin', trim_scale(v.margin), 'rfm', CASE WHEN v.rfm_r IS NULL"
                           " THEN NULL ELSE v.rfm_r::text || v.rfm_f::text || v.rfm_m::text END");
    } else {
        for (int i = 0; i < audience_field_count(); i++)
            if (q->fields & (1u << i))
                jsontext_printf(&sql, ", '%s', %s", audience_field_at(i)->name,
                                audience_field_at(i)->sql);
    }
    if (q->segment_id != NULL) /* a saved segment: when each member entered it */
        jsontext_printf(&sql, ", 'entered_at', crm.ts((SELECT sm.entered_at FROM"
                              " crm.segment_members sm WHERE sm.segment_id = $%d::uuid"
                              " AND sm.customer_id = c.customer_id))",
                        param_add(&p, q->segment_id));
    jsontext_raw(&sql, ") AS item");
    append_members_from(&sql, seg, q, &p);
    if (q->by_clv) {
        int k = param_add(&p, q->cursor_clv);
        jsontext_printf(&sql, " AND ($%d::uuid IS NULL OR CASE WHEN $%d::numeric IS NULL"
                              " THEN v.clv IS NULL AND c.customer_id > $%d::uuid"
                              " ELSE v.clv < $%d::numeric OR v.clv IS NULL"
                              " OR (v.clv = $%d::numeric AND c.customer_id > $%d::uuid) END)",
                        cid, k, cid, k, k, cid);
    } else {
        jsontext_printf(&sql, " AND ($%d::uuid IS NULL OR c.customer_id > $%d::uuid)", cid, cid);
    }
    jsontext_printf(&sql, " ORDER BY %s LIMIT $%d::int + 1)"
                          " SELECT jsonb_build_object("
                          "'items', coalesce((SELECT jsonb_agg(item ORDER BY rn) FROM page"
                          " WHERE rn <= $%d::int), '[]'),"
                          " 'next_cursor', (SELECT id FROM page WHERE rn = $%d::int"
                          " AND (SELECT count(*) FROM page) > $%d::int)",
                    order, lim, lim, lim, lim);
    if (q->by_clv)
        jsontext_printf(&sql, ", 'next_cursor_clv', (SELECT clv FROM page WHERE rn = $%d::int"
                              " AND (SELECT count(*) FROM page) > $%d::int)",
                        lim, lim);
    jsontext_raw(&sql, ")");
    st = query_text(pool, &sql, &p, out, err, errlen);
    free(p.values);
    return st;
}

enum db_status store_segment_export_audit(struct db_pool *pool, const struct principal *who,
                                          const char *segment_id, const char *purpose,
                                          const char *channel, json_t *fields, const char *via,
                                          long count, bool complete, json_t **out, char *err,
                                          size_t errlen)
{
    char count_text[24], *fields_text = json_dumps(fields, JSON_COMPACT);
    const char *params[9] = {who ? who->key_id : NULL, who ? role_name(who->role) : NULL,
                             segment_id, purpose, channel, fields_text, via, count_text,
                             complete ? "true" : "false"};
    enum db_status st;
    snprintf(count_text, sizeof(count_text), "%ld", count);
    st = store_call(pool, STMT_SEGMENT_EXPORT_AUDIT, 9, params, out, err, errlen);
    free(fields_text);
    return st;
}

enum db_status store_segment_export_audit_add(struct db_pool *pool, long long audit_id,
                                              long count, bool complete, char *err,
                                              size_t errlen)
{
    char id_text[24], count_text[24];
    const char *params[3] = {id_text, count_text, complete ? "true" : "false"};
    json_t *out = NULL;
    enum db_status st;
    snprintf(id_text, sizeof(id_text), "%lld", audit_id);
    snprintf(count_text, sizeof(count_text), "%ld", count);
    st = store_call(pool, STMT_SEGMENT_EXPORT_AUDIT_ADD, 3, params, &out, err, errlen);
    json_decref(out);
    return st;
}

enum db_status store_segment_count(struct db_pool *pool, const struct segment_sql *seg,
                                   const struct segment_page_query *q, json_t **out, char *err,
                                   size_t errlen)
{
    int n;
    struct param_list p;
    struct jsontext sql;
    enum db_status st;
    p.values = params_with(seg, 4, &n);
    p.count = n - 4;
    jsontext_init(&sql);
    jsontext_raw(&sql, "SELECT jsonb_build_object('count', count(*))");
    append_members_from(&sql, seg, q, &p);
    st = query_text(pool, &sql, &p, out, err, errlen);
    free(p.values);
    return st;
}

enum db_status store_kpis(struct db_pool *pool, const char *from, const char *to,
                          const struct segment_sql *seg, json_t **out, char *err, size_t errlen)
{
    int n;
    const char **params = params_with(seg, 2, &n);
    char *sql;
    enum db_status st;
    params[n - 2] = from;
    params[n - 1] = to;
    if (seg == NULL)
        sql = sql_printf("SELECT crm.kpis($1::timestamptz, $2::timestamptz, NULL)");
    else
        sql = sql_printf("SELECT crm.kpis($%d::timestamptz, $%d::timestamptz,"
                         " ARRAY(SELECT c.customer_id" MEMBERS_FROM "(%s)))",
                         n - 1, n, seg->where);
    st = db_query_json(pool, sql, n, params, out, err, errlen);
    free(sql);
    free(params);
    return st;
}

enum db_status store_value_runs(struct db_pool *pool, const char *before, const char *limit,
                                json_t **out, char *err, size_t errlen)
{
    const char *params[2] = {before, limit};
    return store_call(pool, STMT_VALUE_RUNS, 2, params, out, err, errlen);
}

enum db_status store_value_settings(struct db_pool *pool, const char *patch, const char *key_id,
                                    const char *role, json_t **out, char *err, size_t errlen)
{
    const char *params[3] = {patch, key_id, role};
    if (patch == NULL)
        return store_call(pool, STMT_VALUE_SETTINGS_GET, 0, NULL, out, err, errlen);
    return store_call(pool, STMT_VALUE_SETTINGS_PATCH, 3, params, out, err, errlen);
}
