/*
 * db: a fixed-size pool of libpq connections guarded by one mutex and a
 * condition variable. A connection is opened the first time it is needed
 * (or ahead of use by db_pool_warm, which main runs in the background at
 * start-up) and prepared with every statement of the catalogue; a
 * connection that failed is closed and re-opened on next use. db_call_json wraps the common
 * "one statement, one JSON value back" call with bounded retries.
 */
#include "db.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY_ATTEMPTS 6

struct db_conn {
    PGconn *pg;
    PGcancel *cancel; /* for db_pool_cancel_busy; set and cleared with pg, under the lock */
    bool cancel_sent; /* db_pool_cancel_busy asked to cancel its statement (lock) */
    bool in_use;
};

/* A thread waiting for a connection; released connections are handed to
 * the oldest waiter first, so no request waits behind later arrivals. */
struct db_waiter {
    pthread_cond_t handed;
    struct db_conn *conn; /* set by db_release when handed over */
    struct db_waiter *next;
};

struct db_pool {
    char *conninfo;
    const char *name;          /* "primary" or "replica", reported by db_served_by */
    bool prepared;             /* named prepared statements (off behind old PgBouncers) */
    struct db_pool *fallback;  /* replica mode: one attempt here, then the fallback */
    time_t down_until;         /* replica mode: skip it until then after a failure */
    const struct db_statement *statements;
    int statement_count;
    int size;
    struct db_conn *conns;
    pthread_mutex_t lock;
    struct db_waiter *waiters_head, *waiters_tail;
};

static _Thread_local const char *served_by = "primary";

void db_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

PGconn *db_connect(const char *conninfo)
{
    /* Defaults first: libpq keeps the last value of a repeated keyword, so
     * what the conninfo (expanded from "dbname") says wins. With a multi-host
     * conninfo for failover, its connect_timeout, keepalives and
     * tcp_user_timeout decide how soon a dead host is given up. */
    const char *keys[] = {"connect_timeout", "application_name", "keepalives_idle", "dbname", NULL};
    const char *values[] = {"5", "crm-server", "30", conninfo, NULL};
    PGconn *pg = PQconnectdbParams(keys, values, 1);
    PGresult *res;
    if (PQstatus(pg) != CONNECTION_OK) {
        log_msg(LOG_ERROR, "db", "connect failed: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    res = PQexec(pg, "SET statement_timeout = '30s'; SET lock_timeout = '10s'; SET TIME ZONE 'UTC'");
    PQclear(res);
    return pg;
}

static bool prepare_all(struct db_pool *pool, PGconn *pg)
{
    for (int i = 0; i < pool->statement_count; i++) {
        PGresult *res = PQprepare(pg, pool->statements[i].name, pool->statements[i].sql, 0, NULL);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok)
            log_msg(LOG_ERROR, "db", "prepare %s failed: %s", pool->statements[i].name,
                    PQerrorMessage(pg));
        PQclear(res);
        if (!ok)
            return false;
    }
    return true;
}

/* A new connection with the pool's statements prepared, or NULL. */
static PGconn *open_connection(struct db_pool *pool)
{
    PGconn *pg = db_connect(pool->conninfo);
    if (pg != NULL && pool->prepared && !prepare_all(pool, pg)) {
        PQfinish(pg);
        pg = NULL;
    }
    return pg;
}

/* Give conn a new connection (or none), with its cancel handle. Only the
 * thread holding conn writes pg; the lock is for db_pool_cancel_busy. */
static void attach_connection(struct db_pool *pool, struct db_conn *conn, PGconn *pg)
{
    PGcancel *cancel = pg != NULL ? PQgetCancel(pg) : NULL;
    pthread_mutex_lock(&pool->lock);
    conn->pg = pg;
    conn->cancel = cancel;
    pthread_mutex_unlock(&pool->lock);
}

/* Close conn's connection; the caller holds the pool's lock. */
static void close_connection_locked(struct db_conn *conn)
{
    PQfreeCancel(conn->cancel);
    conn->cancel = NULL;
    PQfinish(conn->pg);
    conn->pg = NULL;
}

int db_pool_cancel_busy(struct db_pool *pool)
{
    char err[256];
    int sent = 0;
    pthread_mutex_lock(&pool->lock);
    for (int i = 0; i < pool->size; i++)
        if (pool->conns[i].in_use && pool->conns[i].cancel != NULL &&
            PQcancel(pool->conns[i].cancel, err, sizeof(err))) {
            pool->conns[i].cancel_sent = true;
            sent++;
        }
    pthread_mutex_unlock(&pool->lock);
    return sent;
}

bool db_cancel_was_sent(struct db_pool *pool, struct db_conn *conn)
{
    bool sent;
    pthread_mutex_lock(&pool->lock);
    sent = conn->cancel_sent;
    pthread_mutex_unlock(&pool->lock);
    return sent;
}

int db_pool_warm(struct db_pool *pool, const atomic_bool *stop)
{
    int opened = 0;
    for (int i = 0; i < pool->size && !atomic_load(stop); i++) {
        struct db_conn *conn = NULL;
        pthread_mutex_lock(&pool->lock);
        if (!pool->conns[i].in_use && pool->conns[i].pg == NULL) {
            conn = &pool->conns[i];
            conn->in_use = true;
        }
        pthread_mutex_unlock(&pool->lock);
        if (conn == NULL)
            continue; /* busy or already open */
        attach_connection(pool, conn, open_connection(pool));
        bool ok = conn->pg != NULL; /* read before the release hands it on */
        db_release(pool, conn, false);
        if (!ok)
            break; /* unreachable now: requests open connections as they need them */
        opened++;
    }
    return opened;
}

struct db_pool *db_pool_new(const char *conninfo, int size, const struct db_statement *statements,
                            int statement_count)
{
    struct db_pool *pool = calloc(1, sizeof(*pool));
    pool->conninfo = strdup(conninfo);
    pool->statements = statements;
    pool->statement_count = statement_count;
    pool->size = size;
    pool->name = "primary";
    pool->prepared = true;
    pool->conns = calloc((size_t)size, sizeof(struct db_conn));
    pthread_mutex_init(&pool->lock, NULL);
    return pool;
}

void db_pool_set_prepared(struct db_pool *pool, bool prepared)
{
    pool->prepared = prepared;
}

void db_pool_set_fallback(struct db_pool *replica, struct db_pool *primary)
{
    replica->name = "replica";
    replica->fallback = primary;
}

const char *db_served_by(void)
{
    return served_by;
}

void db_pool_free(struct db_pool *pool)
{
    if (pool == NULL)
        return;
    for (int i = 0; i < pool->size; i++)
        if (pool->conns[i].pg != NULL)
            close_connection_locked(&pool->conns[i]);
    pthread_mutex_destroy(&pool->lock);
    free(pool->conns);
    free(pool->conninfo);
    free(pool);
}

struct db_conn *db_acquire(struct db_pool *pool, int timeout_ms)
{
    struct timespec deadline;
    struct db_conn *conn = NULL;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }

    pthread_mutex_lock(&pool->lock);
    if (pool->fallback != NULL && time(NULL) < pool->down_until) {
        pthread_mutex_unlock(&pool->lock); /* a replica that just failed: skip it */
        return NULL;
    }
    /* Prefer an open idle connection; else any idle slot; but never jump
     * the queue of threads already waiting. */
    if (pool->waiters_head == NULL) {
        for (int i = 0; i < pool->size && conn == NULL; i++)
            if (!pool->conns[i].in_use && pool->conns[i].pg != NULL)
                conn = &pool->conns[i];
        for (int i = 0; i < pool->size && conn == NULL; i++)
            if (!pool->conns[i].in_use)
                conn = &pool->conns[i];
    }
    if (conn != NULL) {
        conn->in_use = true;
    } else {
        struct db_waiter me = {.conn = NULL, .next = NULL};
        pthread_cond_init(&me.handed, NULL);
        if (pool->waiters_tail != NULL)
            pool->waiters_tail->next = &me;
        else
            pool->waiters_head = &me;
        pool->waiters_tail = &me;
        while (me.conn == NULL &&
               pthread_cond_timedwait(&me.handed, &pool->lock, &deadline) != ETIMEDOUT)
            ;
        if (me.conn == NULL) {
            /* Timed out: leave the queue (it may be anywhere in it). */
            struct db_waiter **p = &pool->waiters_head, *prev = NULL;
            while (*p != &me) {
                prev = *p;
                p = &(*p)->next;
            }
            *p = me.next;
            if (pool->waiters_tail == &me)
                pool->waiters_tail = prev;
        }
        pthread_cond_destroy(&me.handed);
        conn = me.conn; /* already marked in use by db_release */
        if (conn == NULL) {
            pthread_mutex_unlock(&pool->lock);
            return NULL;
        }
    }
    pthread_mutex_unlock(&pool->lock);

    if (conn->pg != NULL && PQstatus(conn->pg) != CONNECTION_OK) {
        pthread_mutex_lock(&pool->lock);
        close_connection_locked(conn);
        pthread_mutex_unlock(&pool->lock);
    }
    if (conn->pg == NULL) {
        attach_connection(pool, conn, open_connection(pool));
        if (conn->pg == NULL) {
            if (pool->fallback != NULL) {
                pthread_mutex_lock(&pool->lock);
                pool->down_until = time(NULL) + 1;
                pthread_mutex_unlock(&pool->lock);
            }
            db_release(pool, conn, true);
            return NULL;
        }
    }
    return conn;
}

void db_release(struct db_pool *pool, struct db_conn *conn, bool broken)
{
    pthread_mutex_lock(&pool->lock);
    conn->cancel_sent = false;
    if (broken && conn->pg != NULL)
        close_connection_locked(conn);
    if (pool->waiters_head != NULL) {
        /* Hand it straight to the oldest waiter; it stays in use. */
        struct db_waiter *w = pool->waiters_head;
        pool->waiters_head = w->next;
        if (pool->waiters_head == NULL)
            pool->waiters_tail = NULL;
        w->conn = conn;
        pthread_cond_signal(&w->handed);
    } else {
        conn->in_use = false;
    }
    pthread_mutex_unlock(&pool->lock);
}

PGconn *db_pg(struct db_conn *conn)
{
    return conn->pg;
}

void db_pool_stats(struct db_pool *pool, int *in_use, int *open, int *waiting)
{
    *in_use = 0;
    *open = 0;
    *waiting = 0;
    pthread_mutex_lock(&pool->lock);
    for (struct db_waiter *w = pool->waiters_head; w != NULL; w = w->next)
        (*waiting)++;
    for (int i = 0; i < pool->size; i++) {
        *in_use += pool->conns[i].in_use;
        *open += pool->conns[i].pg != NULL;
    }
    pthread_mutex_unlock(&pool->lock);
}

bool db_error_is_transient(PGconn *conn, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
        return true;
    if (state == NULL) /* no SQLSTATE: the connection broke under us */
        return true;
    return strncmp(state, "08", 2) == 0      /* connection exception */
           || strcmp(state, "40001") == 0    /* serialization failure */
           || strcmp(state, "40P01") == 0    /* deadlock detected */
           || strcmp(state, "55P03") == 0    /* lock not available (lock_timeout) */
           || strncmp(state, "57P0", 4) == 0; /* admin/crash shutdown, cannot connect now */
}

/* query_canceled: statement_timeout, or a cancel request. */
static bool is_cancelled(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return state != NULL && strcmp(state, "57014") == 0;
}

/* The first row's first ncols columns as malloc'd text (NULL for SQL NULL);
 * all NULL when there is no row. Retries transient failures. */
static enum db_status run_row(struct db_pool *pool, bool prepared, const char *statement,
                              int nparams, const char *const *params, int ncols, char **cols,
                              char *err, size_t errlen)
{
    int attempts = pool->fallback != NULL ? 1 : RETRY_ATTEMPTS;
    for (int i = 0; i < ncols; i++)
        cols[i] = NULL;
    snprintf(err, errlen, "database unavailable");
    for (int attempt = 0; attempt < attempts; attempt++) {
        struct db_conn *conn;
        PGresult *res;
        bool transient, cancelled;

        if (attempt > 0)
            db_sleep_ms(50 << attempt); /* 100 ms .. 1.6 s, about 3 s in all */
        conn = db_acquire(pool, 5000);
        if (conn == NULL)
            continue;
        res = prepared ? PQexecPrepared(conn->pg, statement, nparams, params, NULL, NULL, 0)
                       : PQexecParams(conn->pg, statement, nparams, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            for (int i = 0; i < ncols && i < PQnfields(res) && PQntuples(res) > 0; i++)
                if (!PQgetisnull(res, 0, i))
                    cols[i] = strdup(PQgetvalue(res, 0, i));
            PQclear(res);
            db_release(pool, conn, false);
            return DB_OK;
        }
        transient = db_error_is_transient(conn->pg, res);
        cancelled = is_cancelled(res);
        snprintf(err, errlen, "%s", PQresultErrorMessage(res));
        PQclear(res);
        db_release(pool, conn, transient && PQstatus(conn->pg) != CONNECTION_OK);
        if (cancelled) /* statement_timeout, or db_pool_cancel_busy at shutdown */
            return DB_CANCELLED;
        if (!transient)
            return DB_ERROR;
    }
    return DB_UNAVAILABLE;
}

/* The SQL text of a catalogue statement, for pools that do not prepare. */
static const char *statement_sql(const struct db_pool *pool, const char *name)
{
    for (int i = 0; i < pool->statement_count; i++)
        if (strcmp(pool->statements[i].name, name) == 0)
            return pool->statements[i].sql;
    return NULL;
}

/* A replica answers once; if it cannot, the read goes to its fallback (the
 * primary) with the usual retries. */
static enum db_status run_routed(struct db_pool *pool, bool prepared, const char *statement,
                                 int nparams, const char *const *params, int ncols, char **cols,
                                 char *err, size_t errlen)
{
    const char *text = statement;
    enum db_status st;
    served_by = pool->name;
    if (prepared && !pool->prepared) {
        text = statement_sql(pool, statement);
        if (text == NULL) {
            snprintf(err, errlen, "unknown statement %s", statement);
            return DB_ERROR;
        }
    }
    st = run_row(pool, prepared && pool->prepared, text, nparams, params, ncols, cols, err,
                 errlen);
    if (st == DB_UNAVAILABLE && pool->fallback != NULL)
        return run_routed(pool->fallback, prepared, statement, nparams, params, ncols, cols, err,
                          errlen);
    return st;
}

static enum db_status run_json(struct db_pool *pool, bool prepared, const char *statement,
                               int nparams, const char *const *params, json_t **out, char *err,
                               size_t errlen)
{
    char *text;
    enum db_status st = run_routed(pool, prepared, statement, nparams, params, 1, &text, err,
                                   errlen);
    *out = NULL;
    if (st == DB_OK && text != NULL) {
        json_error_t jerr;
        *out = json_loads(text, JSON_DECODE_ANY, &jerr);
        if (*out == NULL) {
            snprintf(err, errlen, "bad JSON from database: %s", jerr.text);
            st = DB_ERROR;
        }
    }
    free(text);
    return st;
}

enum db_status db_call_json(struct db_pool *pool, const char *statement, int nparams,
                            const char *const *params, json_t **out, char *err, size_t errlen)
{
    return run_json(pool, true, statement, nparams, params, out, err, errlen);
}

enum db_status db_query_json(struct db_pool *pool, const char *sql, int nparams,
                             const char *const *params, json_t **out, char *err, size_t errlen)
{
    return run_json(pool, false, sql, nparams, params, out, err, errlen);
}

enum db_status db_call_row(struct db_pool *pool, const char *statement, int nparams,
                           const char *const *params, int ncols, char **cols, char *err,
                           size_t errlen)
{
    return run_routed(pool, true, statement, nparams, params, ncols, cols, err, errlen);
}

/* One text value from a parameterised query, without retries. */
static bool query_text(struct db_pool *pool, const char *sql, const char *param, char *out,
                       size_t outlen)
{
    struct db_conn *conn = db_acquire(pool, 1000);
    PGresult *res;
    bool ok;
    if (conn == NULL)
        return false;
    res = PQexecParams(conn->pg, sql, param ? 1 : 0, NULL, param ? &param : NULL, NULL, NULL, 0);
    ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);
    if (ok)
        snprintf(out, outlen, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    db_release(pool, conn, !ok && PQstatus(conn->pg) != CONNECTION_OK);
    return ok;
}

bool db_write_lsn(struct db_pool *pool, char *lsn, size_t len)
{
    return query_text(pool, "SELECT pg_current_wal_insert_lsn()::text", NULL, lsn, len);
}

bool db_replica_caught_up(struct db_pool *replica, const char *lsn, int wait_ms)
{
    /* Not in recovery: not a standby at all, so nothing to wait for (its
     * pg_last_wal_replay_lsn() is NULL, or after a crash recovery the last
     * position that recovery replayed, forever). */
    static const char sql[] =
        "SELECT (NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= $1::pg_lsn)::text";
    struct timespec start, now;
    char answer[8];
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int delay = 1;; delay = delay < 16 ? delay * 2 : delay) {
        long waited;
        if (!query_text(replica, sql, lsn, answer, sizeof(answer)))
            return false;
        if (strcmp(answer, "true") == 0)
            return true;
        clock_gettime(CLOCK_MONOTONIC, &now);
        waited = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (waited + delay > wait_ms)
            return false;
        db_sleep_ms(delay);
    }
}
