/*
 * db: a fixed-size pool of libpq connections guarded by one mutex and a
 * condition variable. A connection is opened the first time it is needed
 * and prepared with every statement of the catalogue; a connection that
 * failed is closed and re-opened on next use. db_call_json wraps the common
 * "one statement, one JSON value back" call with bounded retries.
 */
#include "db.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY_ATTEMPTS 6

struct db_conn {
    PGconn *pg;
    bool in_use;
};

struct db_pool {
    char *conninfo;
    const struct db_statement *statements;
    int statement_count;
    int size;
    struct db_conn *conns;
    pthread_mutex_t lock;
    pthread_cond_t freed;
};

void db_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

PGconn *db_connect(const char *conninfo)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", "keepalives_idle", NULL};
    const char *values[] = {conninfo, "5", "crm-server", "30", NULL};
    PGconn *pg = PQconnectdbParams(keys, values, 1);
    PGresult *res;
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "db: connect failed: %s", PQerrorMessage(pg));
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
            fprintf(stderr, "db: prepare %s failed: %s", pool->statements[i].name,
                    PQerrorMessage(pg));
        PQclear(res);
        if (!ok)
            return false;
    }
    return true;
}

struct db_pool *db_pool_new(const char *conninfo, int size, const struct db_statement *statements,
                            int statement_count)
{
    struct db_pool *pool = calloc(1, sizeof(*pool));
    pool->conninfo = strdup(conninfo);
    pool->statements = statements;
    pool->statement_count = statement_count;
    pool->size = size;
    pool->conns = calloc((size_t)size, sizeof(struct db_conn));
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->freed, NULL);
    return pool;
}

void db_pool_free(struct db_pool *pool)
{
    if (pool == NULL)
        return;
    for (int i = 0; i < pool->size; i++)
        if (pool->conns[i].pg != NULL)
            PQfinish(pool->conns[i].pg);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->freed);
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
    for (;;) {
        /* Prefer an open idle connection; else any idle slot. */
        for (int i = 0; i < pool->size && conn == NULL; i++)
            if (!pool->conns[i].in_use && pool->conns[i].pg != NULL)
                conn = &pool->conns[i];
        for (int i = 0; i < pool->size && conn == NULL; i++)
            if (!pool->conns[i].in_use)
                conn = &pool->conns[i];
        if (conn != NULL)
            break;
        if (pthread_cond_timedwait(&pool->freed, &pool->lock, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&pool->lock);
            return NULL;
        }
    }
    conn->in_use = true;
    pthread_mutex_unlock(&pool->lock);

    if (conn->pg != NULL && PQstatus(conn->pg) != CONNECTION_OK) {
        PQfinish(conn->pg);
        conn->pg = NULL;
    }
    if (conn->pg == NULL) {
        conn->pg = db_connect(pool->conninfo);
        if (conn->pg != NULL && !prepare_all(pool, conn->pg)) {
            PQfinish(conn->pg);
            conn->pg = NULL;
        }
        if (conn->pg == NULL) {
            db_release(pool, conn, true);
            return NULL;
        }
    }
    return conn;
}

void db_release(struct db_pool *pool, struct db_conn *conn, bool broken)
{
    pthread_mutex_lock(&pool->lock);
    if (broken && conn->pg != NULL) {
        PQfinish(conn->pg);
        conn->pg = NULL;
    }
    conn->in_use = false;
    pthread_cond_signal(&pool->freed);
    pthread_mutex_unlock(&pool->lock);
}

PGconn *db_pg(struct db_conn *conn)
{
    return conn->pg;
}

void db_pool_stats(struct db_pool *pool, int *in_use, int *open)
{
    *in_use = 0;
    *open = 0;
    pthread_mutex_lock(&pool->lock);
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

static enum db_status run_json(struct db_pool *pool, bool prepared, const char *statement,
                               int nparams, const char *const *params, json_t **out, char *err,
                               size_t errlen);

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

static enum db_status run_json(struct db_pool *pool, bool prepared, const char *statement,
                               int nparams, const char *const *params, json_t **out, char *err,
                               size_t errlen)
{
    *out = NULL;
    snprintf(err, errlen, "database unavailable");
    for (int attempt = 0; attempt < RETRY_ATTEMPTS; attempt++) {
        struct db_conn *conn;
        PGresult *res;
        bool transient;

        if (attempt > 0)
            db_sleep_ms(50 << attempt); /* 100 ms .. 1.6 s, about 3 s in all */
        conn = db_acquire(pool, 5000);
        if (conn == NULL)
            continue;
        res = prepared ? PQexecPrepared(conn->pg, statement, nparams, params, NULL, NULL, 0)
                       : PQexecParams(conn->pg, statement, nparams, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            enum db_status status = DB_OK;
            if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
                json_error_t jerr;
                *out = json_loads(PQgetvalue(res, 0, 0), JSON_DECODE_ANY, &jerr);
                if (*out == NULL) {
                    snprintf(err, errlen, "bad JSON from database: %s", jerr.text);
                    status = DB_ERROR;
                }
            }
            PQclear(res);
            db_release(pool, conn, false);
            return status;
        }
        transient = db_error_is_transient(conn->pg, res);
        snprintf(err, errlen, "%s", PQresultErrorMessage(res));
        PQclear(res);
        db_release(pool, conn, transient && PQstatus(conn->pg) != CONNECTION_OK);
        if (!transient)
            return DB_ERROR;
    }
    return DB_UNAVAILABLE;
}
