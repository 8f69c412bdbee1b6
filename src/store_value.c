/*
 * store_value: segment and KPI queries. A compiled segment is a boolean SQL
 * expression over "c" (crm.customers) and "v" (crm.customer_value) using
 * parameters $1..$n; these functions wrap it in the page, count and KPI
 * queries and append their own parameters after the segment's.
 */
#include "store_value.h"

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

enum db_status store_segment_create(struct db_pool *pool, const char *id, const char *name,
                                    const char *description, json_t *rule, json_t **out,
                                    char *err, size_t errlen)
{
    char *rule_text = json_dumps(rule, JSON_COMPACT);
    const char *params[4] = {id, name, description, rule_text};
    enum db_status st = store_call(pool, STMT_SEGMENT_CREATE, 4, params, out, err, errlen);
    free(rule_text);
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

enum db_status store_segment_page(struct db_pool *pool, const struct segment_sql *seg,
                                  const char *cursor, int limit, json_t **out, char *err,
                                  size_t errlen)
{
    int n;
    const char **params = params_with(seg, 2, &n);
    char limit_text[16];
    char *sql;
    enum db_status st;
    snprintf(limit_text, sizeof(limit_text), "%d", limit);
    params[n - 2] = cursor;
    params[n - 1] = limit_text;
    sql = sql_printf(
        "WITH page AS ("
        " SELECT c.customer_id AS id, row_number() OVER (ORDER BY c.customer_id) AS rn,"
        "  jsonb_build_object("
        "   'customer_id', c.customer_id, 'tier', v.tier, 'clv', trim_scale(v.clv),"
        "   'p_alive', v.p_alive, 'margin', trim_scale(v.margin),"
        "   'rfm', CASE WHEN v.rfm_r IS NULL THEN NULL"
        "          ELSE v.rfm_r::text || v.rfm_f::text || v.rfm_m::text END) AS item"
        MEMBERS_FROM "($%d::uuid IS NULL OR c.customer_id > $%d::uuid) AND (%s)"
        " ORDER BY c.customer_id LIMIT $%d::int + 1)"
        " SELECT jsonb_build_object("
        "  'items', coalesce((SELECT jsonb_agg(item ORDER BY id) FROM page"
        "                      WHERE rn <= $%d::int), '[]'),"
        "  'next_cursor', (SELECT id FROM page WHERE rn = $%d::int"
        "                    AND (SELECT count(*) FROM page) > $%d::int))",
        n - 1, n - 1, seg->where, n, n, n, n);
    st = db_query_json(pool, sql, n, params, out, err, errlen);
    free(sql);
    free(params);
    return st;
}

enum db_status store_segment_count(struct db_pool *pool, const struct segment_sql *seg,
                                   json_t **out, char *err, size_t errlen)
{
    int n;
    const char **params = params_with(seg, 0, &n);
    char *sql = sql_printf("SELECT jsonb_build_object('count', count(*))" MEMBERS_FROM "(%s)",
                           seg->where);
    enum db_status st = db_query_json(pool, sql, n, params, out, err, errlen);
    free(sql);
    free(params);
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
