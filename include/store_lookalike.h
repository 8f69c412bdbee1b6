/*
 * store_lookalike: the reads and writes of the look-alikes route
 * (docs/lookalikes.md): the feature rows of every live customer, streamed
 * by COPY from crm.lookalike_features into arrays the pure model
 * (lookalike.h) reads, the most common needs, and the cached fit of a
 * segment. No HTTP here: callers map db_status to responses.
 */
#ifndef CRM_STORE_LOOKALIKE_H
#define CRM_STORE_LOOKALIKE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "db.h"
#include "lookalike.h"
#include "textutil.h"

/* The feature rows: n rows of p values (x, row-major; the fixed features
 * then one 0/1 indicator per need asked for), member[i] the label. */
struct lookalike_rows {
    size_t n, cap;
    int p;
    double *x;
    unsigned char *member;
    char (*ids)[UUID_TEXT_LEN + 1];
    size_t members;
};
void lookalike_rows_free(struct lookalike_rows *rows);

/* Every live customer's features against segment_id's membership, with an
 * indicator for each of needs (a JSON array of at most LOOKALIKE_NEEDS
 * strings). One statement (COPY ... TO STDOUT). */
enum db_status store_lookalike_rows(struct db_pool *pool, const char *segment_id,
                                    json_t *needs, struct lookalike_rows *rows, char *err,
                                    size_t errlen);

/* The k needs held by the most members of the segment: a JSON array. */
enum db_status store_lookalike_needs(struct db_pool *pool, const char *segment_id, int k,
                                     json_t **out, char *err, size_t errlen);
/* The segment's fit when newer than max_age_s and than its last change,
 * else *out NULL. */
enum db_status store_lookalike_fit_get(struct db_pool *pool, const char *segment_id,
                                       int max_age_s, json_t **out, char *err, size_t errlen);
/* Keep fit as the segment's; *out its document (NULL: the segment is gone). */
enum db_status store_lookalike_fit_save(struct db_pool *pool, const char *segment_id,
                                        json_t *fit, json_t **out, char *err, size_t errlen);

#endif
