/*
 * feed: the change feed's vocabulary. Owns the catalogue of event types
 * (the names the triggers of sql/010_activation.sql write), the cursor of
 * GET /v1/events ("<xid>-<seq>-<unix time of the event>", opaque to
 * clients) and the types filter. Pure: no I/O.
 */
#ifndef CRM_FEED_H
#define CRM_FEED_H

#include <stdbool.h>
#include <stddef.h>

/* Every event type, NULL-terminated. */
extern const char *const FEED_EVENT_TYPES[];

bool feed_event_type_known(const char *type, size_t len);

/* A feed position: the writing transaction's id, the event's sequence
 * number, and the event's time (unix seconds, for the retention check). */
struct feed_cursor {
    char xid[24]; /* decimal xid8 */
    char seq[24]; /* decimal */
    long long at;
};

/* The start of the feed (before every event). */
void feed_cursor_start(struct feed_cursor *c);

/* True for the start of the feed ("0-0-…"): never too old. */
bool feed_cursor_is_start(const struct feed_cursor *c);

/* Parse a cursor given by a client; false when it is not one. */
bool feed_cursor_parse(const char *text, struct feed_cursor *c);

/* A comma-separated list of event types as a PostgreSQL array literal
 * ("{a,b}"); false (err filled) for an unknown or empty type, or when out is
 * too small. */
bool feed_types_parse(const char *csv, char *out, size_t outcap, char *err, size_t errlen);

#endif
