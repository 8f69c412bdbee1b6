/*
 * store_value: queries of the value layer: saved segments, segment
 * membership pages and counts (dynamic SQL from the segment compiler, all
 * values as parameters), and KPIs.
 */
#ifndef CRM_STORE_VALUE_H
#define CRM_STORE_VALUE_H

#include <jansson.h>
#include <stdbool.h>

#include "auth.h"
#include "db.h"
#include "segment.h"

/* Create (create) or change a saved segment with its compiled rule (seg,
 * compiled from rule; rule NULL on a change that keeps the rule) and
 * compute its live membership in the same transaction
 * (crm.segment_save). *out: the segment's document, {"conflict": true}
 * when the name is taken, NULL when a changed segment does not exist. */
enum db_status store_segment_save(struct db_pool *pool, const char *id, bool create,
                                  const char *name, bool set_description,
                                  const char *description, json_t *rule,
                                  const struct segment_sql *seg, json_t **out, char *err,
                                  size_t errlen);
/* NULL when unknown. */
enum db_status store_segment_get(struct db_pool *pool, const char *id, json_t **out, char *err,
                                 size_t errlen);
enum db_status store_segment_list(struct db_pool *pool, json_t **out, char *err, size_t errlen);
/* *out is {"deleted": true|false}, with "webhooks": [ids] when refused
 * because webhooks filter on the segment. */
enum db_status store_segment_delete(struct db_pool *pool, const char *id, json_t **out,
                                    char *err, size_t errlen);

/* What a members page or export page gives out. */
struct segment_page_query {
    bool by_clv;            /* order by clv descending (nulls last), then customer_id;
                             * else by customer_id */
    const char *cursor_id;  /* the last customer of the previous page; NULL = first page */
    const char *cursor_clv; /* by_clv: that customer's clv as text, NULL when it had none */
    int limit;
    unsigned int fields;    /* audience_field_at bits; 0 = the default value item */
    /* With purpose: only members whom crm.contact_decision allows for
     * (purpose, channel) at at (NULL = now), each with "address": its
     * identifier of address_kind (members without one are left out). */
    const char *purpose, *channel, *at, *address_kind;
    /* A saved segment's id: each item gets its member's entered_at (null
     * while the refresher has not recorded the member yet); NULL for a
     * preview. */
    const char *segment_id;
};

/* One page of members: {items: [...], next_cursor[, next_cursor_clv]}
 * (next_cursor: the page's last customer_id, null on the last page;
 * next_cursor_clv with by_clv: its clv text or null). */
enum db_status store_segment_page(struct db_pool *pool, const struct segment_sql *seg,
                                  const struct segment_page_query *q, json_t **out, char *err,
                                  size_t errlen);

/* {count: n}: the members, or with q's purpose those the contact decision
 * allows (q may be NULL; only its purpose, channel, at, address_kind count). */
enum db_status store_segment_count(struct db_pool *pool, const struct segment_sql *seg,
                                   const struct segment_page_query *q, json_t **out, char *err,
                                   size_t errlen);

/* The audit row of a segment export or of a members page with contact
 * data (action segment.export): {audit_id}. fields is a JSON array of the
 * field names asked for; via "export" or "customers". */
enum db_status store_segment_export_audit(struct db_pool *pool, const struct principal *who,
                                          const char *segment_id, const char *purpose,
                                          const char *channel, json_t *fields, const char *via,
                                          long count, bool complete, json_t **out, char *err,
                                          size_t errlen);
/* Add count customers to an export's audit row (complete: the last page). */
enum db_status store_segment_export_audit_add(struct db_pool *pool, long long audit_id,
                                              long count, bool complete, char *err,
                                              size_t errlen);


/* KPIs over [from, to) for everyone (seg NULL) or a segment's members. */
enum db_status store_kpis(struct db_pool *pool, const char *from, const char *to,
                          const struct segment_sql *seg, json_t **out, char *err, size_t errlen);

/* One page of value runs, newest first, before run before (NULL: from the
 * newest): {items: [run...], next_cursor}. */
enum db_status store_value_runs(struct db_pool *pool, const char *before, const char *limit,
                                json_t **out, char *err, size_t errlen);

/* The value settings; with patch (a checked JSON object), changed first by
 * who (audited). A patch the database refuses answers {invalid: reason}. */
enum db_status store_value_settings(struct db_pool *pool, const char *patch, const char *key_id,
                                    const char *role, json_t **out, char *err, size_t errlen);

#endif
