/*
 * metrics: process-wide counters for GET /metrics (Prometheus text format
 * 0.0.4): requests by route and status, a request latency histogram, and
 * the database pool gauges read at scrape time. Lock-free (atomics), so
 * recording costs a few instructions per request.
 */
#ifndef CRM_METRICS_H
#define CRM_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "audit.h"
#include "db.h"
#include "router.h"

/* Record one finished request; route < 0 when no route matched. */
void metrics_record(int route, int status, double seconds);

/* Count stored interactions (single and batch): created, duplicates, failed. */
void metrics_ingest(int created, int duplicates, int failed);
/* A batch the set-based statement could not store (stored item by item). */
void metrics_batch_fallback(void);

/* A long-route request was queued (+1) or finished (-1). */
void metrics_long_request(int delta);
/* A long-route request answered 503 because the queue was full. */
void metrics_long_refused(void);

/* Webhook delivery attempts by outcome (webhook.c). */
enum webhook_outcome { WEBHOOK_DELIVERED, WEBHOOK_RETRY, WEBHOOK_DEAD, WEBHOOK_OUTCOME_COUNT };
void metrics_webhook_outcome(enum webhook_outcome outcome);
/* Pending deliveries and the age of the oldest undelivered event, as last
 * read by the fanning-out worker (every 2 s). */
void metrics_webhook_queue(long long pending, double oldest_age_seconds);
/* Value runs of this process: one under way or not; finished by status
 * ("succeeded", "failed": not converged, "error": did not complete). */
void metrics_value_run_running(bool running);
void metrics_value_run_done(const char *status);

/* Render everything; returns a malloc'd string. */
char *metrics_render(struct db_pool *pool, struct audit *audit);

#endif
