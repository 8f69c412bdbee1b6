/*
 * store_customize: the one query of the customize routes that is built at
 * run time: a page of moments restricted to a saved segment (the compiled
 * rule's $1..$n first, then the page parameters). Everything else is a
 * prepared statement of store.c's catalogue calling a crm.* function of
 * sql/functions/customize.sql.
 */
#ifndef CRM_STORE_CUSTOMIZE_H
#define CRM_STORE_CUSTOMIZE_H

#include <jansson.h>

#include "db.h"
#include "segment.h"

struct moments_query {
    const char *kind;        /* built in (birthday, anniversary, warranty) or declared */
    const char *at;          /* RFC 3339; NULL = now */
    int days, limit;
    const char *cursor_date; /* YYYY-MM-DD, customer and subject (the purchase of a */
    const char *cursor_id;   /* warranty, else the customer) of the last item; NULL */
    const char *cursor_subject; /* for page 1 */
    const char *purpose;     /* consent filter; NULL = none */
    const char *channel;
};

/* {kind, from, to, items, next_cursor_date, next_cursor_id, next_cursor_subject},
 * or {unknown_kind: [kinds]}; seg may be NULL. */
enum db_status store_moments(struct db_pool *pool, const struct moments_query *q,
                             const struct segment_sql *seg, json_t **out, char *err,
                             size_t errlen);

#endif
