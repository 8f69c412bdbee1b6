/*
 * segment_refresh: the live segment membership refresher (docs/segments.md).
 * A ticker thread with its own database connection that, every
 * --segment-refresh-ms: compiles again the stored rule of every segment
 * compiled by an older segment.c (or never: saved before live membership)
 * and has its members recomputed; then runs crm.segment_refresh rounds
 * (the feed after the refresher's cursor, the segments that depend on what
 * changed, for the customers it changed; a finished value run; the time
 * sweep) until the feed is read to its end. One instance at a time through
 * a row lock: every instance may run one, the others' rounds answer busy.
 * Does I/O: PostgreSQL.
 */
#ifndef CRM_SEGMENT_REFRESH_H
#define CRM_SEGMENT_REFRESH_H

#include "config.h"

struct segment_refresher;

/* Start the thread (none when cfg->segment_refresh_ms is 0: returns a
 * refresher that does nothing). NULL if the thread cannot be started. */
struct segment_refresher *segment_refresher_start(const struct config *cfg);

/* Stop after the round under way and free everything. NULL is allowed. */
void segment_refresher_stop(struct segment_refresher *r);

#endif
