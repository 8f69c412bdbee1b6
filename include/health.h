/*
 * health: what GET /ready answers, kept in memory. A background thread
 * checks the primary once a second on a connection of its own (2 s connect
 * and query timeouts), so /ready answers at once whether the database is
 * up, down or hanging, instead of going through the pool's retries (3 s and
 * more when it is down). Also owns the "stopping" state: from SIGTERM on,
 * /ready answers 503 so that load balancers take the instance out.
 */
#ifndef CRM_HEALTH_H
#define CRM_HEALTH_H

#include <stdbool.h>

struct health;

/* Check conninfo's database once now (so /ready is right from the first
 * request), then every HEALTH_INTERVAL_MS on a thread. NULL if the thread
 * cannot be started. */
struct health *health_start(const char *conninfo);

#define HEALTH_INTERVAL_MS 1000
/* A success older than this counts as a failure (a check stuck on a dead
 * network is not taken for a healthy database). */
#define HEALTH_STALE_MS 3000

/* The last check succeeded, less than HEALTH_STALE_MS ago. */
bool health_database_ok(struct health *h);

/* From SIGTERM on; health_stopping is then true. */
void health_set_stopping(struct health *h);
bool health_stopping(struct health *h);

/* Stop the thread (within the check's timeouts), close its connection. */
void health_stop(struct health *h);

#endif
