/*
 * db: the PostgreSQL connection pool. Owns connections (created lazily up to
 * the configured size, re-created after the server goes away), the prepared
 * statements on each of them, and the retry policy: work is retried on lost
 * connections and on serialization failures/deadlocks, so a PostgreSQL
 * restart costs latency, not errors, as long as it comes back quickly.
 * Everything the callers run is idempotent, which is what makes the retry safe.
 */
#ifndef CRM_DB_H
#define CRM_DB_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct db_statement {
    const char *name;
    const char *sql;
};

enum db_status {
    DB_OK,
    DB_UNAVAILABLE, /* could not reach the database (after retries) */
    DB_ERROR,       /* the database rejected the statement: a bug or bad data */
    DB_CANCELLED,   /* the statement was cancelled: statement_timeout, or
                       db_pool_cancel_busy at shutdown (not retried) */
};

struct db_pool;
struct db_conn;

/* statements must outlive the pool; they are prepared on every connection. */
struct db_pool *db_pool_new(const char *conninfo, int size, const struct db_statement *statements,
                            int statement_count);
void db_pool_free(struct db_pool *pool);

/* prepared = false: run catalogue statements as unnamed ones (PgBouncer < 1.21
 * in transaction mode cannot keep named prepared statements). Default true. */
void db_pool_set_prepared(struct db_pool *pool, bool prepared);

/* Make pool a read replica of primary: one attempt per call, and when the
 * replica cannot answer, the call goes to primary (and the replica is skipped
 * for a second after a failed connect). */
void db_pool_set_fallback(struct db_pool *replica, struct db_pool *primary);

/* "primary" or "replica": which pool answered this thread's last call. */
const char *db_served_by(void);

/* The primary's current WAL insert position (after a committed write, a
 * position the replica must replay to show that write). */
bool db_write_lsn(struct db_pool *pool, char *lsn, size_t len);

/* True once the replica has replayed up to lsn, polling for up to wait_ms;
 * false on timeout or when the replica cannot answer. */
bool db_replica_caught_up(struct db_pool *replica, const char *lsn, int wait_ms);

/* Open the pool's idle, unopened connections one after another (with their
 * prepared statements), so the first requests after start-up do not pay for
 * connecting. Stops at the first failure or once *stop is true; returns how
 * many it opened. Requests may use the pool meanwhile. */
int db_pool_warm(struct db_pool *pool, const atomic_bool *stop);

/* Borrow a connection, waiting up to timeout_ms for a free one. NULL when
 * none could be had (pool exhausted or database unreachable). */
struct db_conn *db_acquire(struct db_pool *pool, int timeout_ms);
/* Give it back; broken = the connection's state is unknown, close it. */
void db_release(struct db_pool *pool, struct db_conn *conn, bool broken);
PGconn *db_pg(struct db_conn *conn);

/* Ask PostgreSQL to cancel the statement running on every connection in
 * use (shutdown after the drain timeout); returns how many requests were
 * sent. A cancelled statement's call answers DB_CANCELLED. Each request is
 * a short connection to the server, made under the pool's lock: with the
 * server unreachable it blocks until that connect fails. */
int db_pool_cancel_busy(struct db_pool *pool);

/* True when db_pool_cancel_busy cancelled conn's statement since it was
 * acquired (for callers running their own statements on it). */
bool db_cancel_was_sent(struct db_pool *pool, struct db_conn *conn);

/* Connections in use / open, and threads waiting for one, for diagnostics. */
void db_pool_stats(struct db_pool *pool, int *in_use, int *open, int *waiting);

/* True when the error means "try again": lost connection, server shutting
 * down, serialization failure or deadlock. */
bool db_error_is_transient(PGconn *conn, const PGresult *res);

/*
 * Run a prepared statement that returns at most one row with one json/jsonb
 * column, with retries. *out is the parsed value, or NULL for no row or SQL
 * NULL. params may contain NULLs (SQL NULL).
 */
enum db_status db_call_json(struct db_pool *pool, const char *statement, int nparams,
                            const char *const *params, json_t **out, char *err, size_t errlen);

/* The same for an unprepared, parameterised statement (dynamic SQL such as
 * compiled segment rules; values still travel only as parameters). */
enum db_status db_query_json(struct db_pool *pool, const char *sql, int nparams,
                             const char *const *params, json_t **out, char *err, size_t errlen);

/* The same for a statement answering one row of text columns: cols[0..ncols)
 * receive malloc'd copies (NULL for SQL NULL; all NULL for no row), for
 * answers passed on without parsing (profile documents). */
enum db_status db_call_row(struct db_pool *pool, const char *statement, int nparams,
                           const char *const *params, int ncols, char **cols, char *err,
                           size_t errlen);

/* Run a simple query (no parameters) once on a fresh connection; for migrations and checks. */
PGconn *db_connect(const char *conninfo);

/* Sleep for ms milliseconds (retry back-off). */
void db_sleep_ms(int ms);

#endif
