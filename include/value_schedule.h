/*
 * value_schedule: value runs on a schedule inside the server. Owns a ticker
 * thread that, every min(--value-schedule, 30) seconds, asks the database
 * whether the scheduled run is due (crm.value_schedule_claim: one instance
 * gets it, under a row lock) and, when it is, runs a live value recompute
 * on the primary pool (value.h). Does I/O: PostgreSQL, through the pool.
 */
#ifndef CRM_VALUE_SCHEDULE_H
#define CRM_VALUE_SCHEDULE_H

#include <stdbool.h>

#include "config.h"
#include "db.h"

struct value_schedule;

/* Start (*out NULL when --value-schedule is 0). False when the thread
 * cannot start. */
bool value_schedule_start(const struct config *cfg, struct db_pool *pool,
                          struct value_schedule **out);

/* Stop the thread; a run under way is cancelled (it rolls back whole and
 * the next due check runs it again). NULL is allowed. Call before the pool
 * is freed. */
void value_schedule_stop(struct value_schedule *s);

#endif
