/*
 * webhook: webhook delivery. Owns the delivery worker threads of this
 * instance (each with its own database connection and its own reused curl
 * handle, so connections to receivers are kept alive), the fan-out of feed
 * events into deliveries (worker 0; one instance at a time through a row
 * lock), the retention purge, the queue gauges, and the destination check
 * (resolve the host, refuse private, loopback and link-local addresses
 * unless allowed, pin the checked addresses for the request). Does I/O:
 * PostgreSQL, DNS, HTTP.
 */
#ifndef CRM_WEBHOOK_H
#define CRM_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct webhooks;

/* Start cfg->webhook_workers threads (none when 0: the instance then
 * neither fans out nor delivers). NULL if a thread cannot be started. */
struct webhooks *webhooks_start(const struct config *cfg);

/* At SIGTERM: workers finish the attempt in flight (bounded by
 * --webhook-timeout), give back the deliveries they claimed but did not
 * start, and stop. Returns at once. */
void webhooks_signal_stop(struct webhooks *w);

/* Wait for the workers to stop and free everything. */
void webhooks_stop(struct webhooks *w);

/* Whether url may be a webhook: its syntax, and every address its host
 * resolves to is public or allowed by allow (webhook_policy.h). When pin is
 * not NULL, it receives a curl resolve entry "host:port:addr[,addr...]" for
 * the checked addresses. False with a reason in err. Resolves the host. */
bool webhook_check_destination(const char *url, const char *allow, char *pin, size_t pincap,
                               char *err, size_t errlen);

#endif
