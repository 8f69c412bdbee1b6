/*
 * audit: the read-audit writer. Every personal-data read served from the
 * profile path (profile, lookup, timeline) adds one row here; a background
 * thread writes the rows in batches (crm.audit_reads) at least every
 * flush_ms, so reads cost no write of their own and can be served by a
 * read-only replica. Rows are kept and retried while the database is away;
 * when the queue is full, audit_add refuses and the read must fail (no
 * unaudited reads). flush_ms = 0 writes each row before audit_add returns.
 * What can be lost: rows not yet flushed when the process is killed
 * (SIGKILL, crash); SIGTERM flushes before exit.
 */
#ifndef CRM_AUDIT_H
#define CRM_AUDIT_H

#include <stdbool.h>

#include "auth.h"
#include "db.h"

#define AUDIT_QUEUE_MAX 100000

struct audit;

struct audit *audit_new(struct db_pool *pool, int flush_ms);
/* Flush what is queued (retrying for a few seconds) and stop. */
void audit_free(struct audit *audit);

/* Queue the audit row of who's read of customer_id; false when it cannot be
 * recorded (queue full, or with flush_ms = 0 the write failed). */
bool audit_add(struct audit *audit, const struct principal *who, const char *action,
               const char *customer_id);

/* Write what is queued now (one attempt with the usual retries); false
 * when some rows are still pending afterwards. */
bool audit_flush(struct audit *audit);

/* Rows queued and not yet written; rows written since start. */
void audit_stats(struct audit *audit, long *queued, long *written);

#endif
