/*
 * ticker: a background thread that calls tick(ctx) every period_ms, and at
 * once when woken (ticker_wake). The one timed loop behind the read-audit
 * writer (audit.c), the access-log flusher (accesslog.c), the database
 * health checker (health.c) and the daily moments run (moments.c). Owns the thread, its lock and its condition
 * (CLOCK_MONOTONIC); tick runs without the lock held and does its own I/O.
 */
#ifndef CRM_TICKER_H
#define CRM_TICKER_H

struct ticker;

/* Start the thread; NULL if it cannot be started. */
struct ticker *ticker_start(int period_ms, void (*tick)(void *ctx), void *ctx);

/* Run the next tick now instead of at the end of the period. */
void ticker_wake(struct ticker *t);

/* Stop the thread after the tick under way, if any, and free it. No final
 * tick: the owner does its own last round. NULL is allowed. */
void ticker_stop(struct ticker *t);

#endif
