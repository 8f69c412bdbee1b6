/*
 * moments: the daily moments run of this instance. Owns a ticker thread
 * with a database connection of its own that, every --moments-period
 * seconds and once at start, calls crm.moments_tick for today's date in
 * --moments-time-zone: the moment.due events of today (and of the days
 * missed, up to --moments-catch-up) are written to the change feed, once
 * each. Several instances may run it: the database lets one at a time
 * through and the ledger keeps every moment to one event
 * (sql/013_moment_events.sql, docs/customize.md). Does I/O: PostgreSQL.
 */
#ifndef CRM_MOMENTS_H
#define CRM_MOMENTS_H

#include <stdbool.h>

#include "config.h"

struct moments;

/* Start the run (*out NULL when --moments-period is 0). False when the
 * time zone is unknown to the database or the thread cannot start; a
 * database that cannot be reached yet is not an error (the run tries again
 * at every period). */
bool moments_start(const struct config *cfg, struct moments **out);

/* Stop the thread, cancelling the run under way, if any (it rolls back);
 * close the connection. NULL is allowed. */
void moments_stop(struct moments *m);

#endif
