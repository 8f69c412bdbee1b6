/*
 * store_value: queries of the value layer: saved segments, segment
 * membership pages and counts (dynamic SQL from the segment compiler, all
 * values as parameters), and KPIs.
 */
#ifndef CRM_STORE_VALUE_H
#define CRM_STORE_VALUE_H

#include <jansson.h>
#include <stdbool.h>

#include "db.h"
#include "segment.h"

/* The saved segment as {segment_id, name, description, rule, created_at};
 * *out is NULL when the name is taken. */
enum db_status store_segment_create(struct db_pool *pool, const char *id, const char *name,
                                    const char *description, json_t *rule, json_t **out,
                                    char *err, size_t errlen);
/* NULL when unknown. */
enum db_status store_segment_get(struct db_pool *pool, const char *id, json_t **out, char *err,
                                 size_t errlen);
enum db_status store_segment_list(struct db_pool *pool, json_t **out, char *err, size_t errlen);
/* *out is {"deleted": true|false}. */
enum db_status store_segment_delete(struct db_pool *pool, const char *id, json_t **out,
                                    char *err, size_t errlen);

/* One page of members ordered by customer_id after cursor (NULL = first):
 * {items: [...], next_cursor}. */
enum db_status store_segment_page(struct db_pool *pool, const struct segment_sql *seg,
                                  const char *cursor, int limit, json_t **out, char *err,
                                  size_t errlen);
/* {count: n} */
enum db_status store_segment_count(struct db_pool *pool, const struct segment_sql *seg,
                                   json_t **out, char *err, size_t errlen);

/* KPIs over [from, to) for everyone (seg NULL) or a segment's members. */
enum db_status store_kpis(struct db_pool *pool, const char *from, const char *to,
                          const struct segment_sql *seg, json_t **out, char *err, size_t errlen);

#endif
