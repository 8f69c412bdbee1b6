/*
 * store_customize: moments pages. Without a segment this is the prepared
 * "moments" statement; with one, the same crm.moments call gets the
 * segment's members as an array built from the compiled rule, whose values
 * stay bound parameters ($1..$n) ahead of the page's own.
 */
#include "store_customize.h"

#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOMENT_PARAMS 9

#define MEMBERS_FROM                                                                         \
    " FROM crm.customers c LEFT JOIN crm.customer_value v ON v.customer_id = c.customer_id " \
    "WHERE c.merged_into IS NULL AND "

enum db_status store_moments(struct db_pool *pool, const struct moments_query *q,
                             const struct segment_sql *seg, json_t **out, char *err,
                             size_t errlen)
{
    size_t nseg = seg != NULL ? json_array_size(seg->params) : 0;
    const char **params = calloc(nseg + MOMENT_PARAMS, sizeof(*params));
    char days[16], limit[16];
    char *sql = NULL;
    int b = (int)nseg; /* the page's parameters follow the segment's */
    enum db_status st;

    for (size_t i = 0; i < nseg; i++)
        params[i] = json_string_value(json_array_get(seg->params, i)); /* NULL for json null */
    snprintf(days, sizeof(days), "%d", q->days);
    snprintf(limit, sizeof(limit), "%d", q->limit);
    params[b + 0] = q->kind;
    params[b + 1] = q->at;
    params[b + 2] = days;
    params[b + 3] = limit;
    params[b + 4] = q->cursor_date;
    params[b + 5] = q->cursor_id;
    params[b + 6] = q->cursor_subject;
    params[b + 7] = q->purpose;
    params[b + 8] = q->channel;
    if (seg == NULL) {
        st = store_call(pool, STMT_MOMENTS, MOMENT_PARAMS, params, out, err, errlen);
    } else if (asprintf(&sql,
                        "SELECT crm.moments($%d, $%d::timestamptz, $%d::int, $%d::int,"
                        " $%d::date, $%d::uuid, $%d::uuid, $%d, $%d,"
                        " ARRAY(SELECT c.customer_id" MEMBERS_FROM "(%s)))",
                        b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9,
                        seg->where) < 0) {
        snprintf(err, errlen, "out of memory");
        st = DB_ERROR;
    } else {
        st = db_query_json(pool, sql, b + MOMENT_PARAMS, params, out, err, errlen);
    }
    free(sql);
    free(params);
    return st;
}
