/*
 * metrics: process-wide counters for GET /metrics (Prometheus text format
 * 0.0.4): requests by route and status, a request latency histogram, and
 * the database pool gauges read at scrape time. Lock-free (atomics), so
 * recording costs a few instructions per request.
 */
#ifndef CRM_METRICS_H
#define CRM_METRICS_H

#include <stddef.h>

#include "db.h"
#include "router.h"

/* Record one finished request; route < 0 when no route matched. */
void metrics_record(int route, int status, double seconds);

/* Render everything; returns a malloc'd string. */
char *metrics_render(struct db_pool *pool);

#endif
