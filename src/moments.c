/*
 * moments: one ticker, one connection (opened on demand, dropped after a
 * failure and opened again at the next period). A run is one statement,
 * crm.moments_tick, whose transaction takes the crm.moments_state row with
 * SKIP LOCKED: an instance that finds another running skips its period. The
 * date of today is computed by PostgreSQL in the configured zone, so the
 * server's own clock and zone do not matter. Runs with events, catch-ups
 * and failures are logged; quiet runs are not. At stop, a run under way is
 * cancelled (it rolls back whole; the next run does its work). After each
 * run, the journey stage's sweep (its own statement and lock).
 */
#include "moments.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "ticker.h"

struct moments {
    char *conninfo;
    char zone[65];
    char catch_up[16];
    PGconn *pg; /* the ticker thread's only */
    struct ticker *ticker;
    pthread_mutex_t lock;
    PGcancel *cancel; /* under lock: set while a run is under way */
};

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* A connection for the run: UTC, and a statement may take its time (a run
 * over every customer) but never wait long for a lock. */
static PGconn *open_connection(const char *conninfo)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *values[] = {conninfo, "5", "crm-server-moments", NULL};
    PGconn *pg = PQconnectdbParams(keys, values, 1);
    PGresult *res;
    if (PQstatus(pg) != CONNECTION_OK) {
        PQfinish(pg);
        return NULL;
    }
    res = PQexec(pg, "SET statement_timeout = '300s'; SET lock_timeout = '10s'; "
                     "SET TIME ZONE 'UTC'");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        PQclear(res);
        PQfinish(pg);
        return NULL;
    }
    PQclear(res);
    return pg;
}

/* The journey stage's sweep (crm.stage_sweep, docs/stage.md) after each
 * moments run, on the same connection: the customers whose stage may have
 * changed by time alone. NULL: another instance is sweeping. */
static void sweep_stages(struct moments *m)
{
    struct timespec t0;
    PGresult *res;
    json_t *doc;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_mutex_lock(&m->lock);
    m->cancel = PQgetCancel(m->pg);
    pthread_mutex_unlock(&m->lock);
    res = PQexec(m->pg, "SELECT crm.stage_sweep()");
    pthread_mutex_lock(&m->lock);
    PQfreeCancel(m->cancel);
    m->cancel = NULL;
    pthread_mutex_unlock(&m->lock);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        log_msg(LOG_WARNING, "stage", "sweep failed: %s", PQerrorMessage(m->pg));
        PQclear(res);
        PQfinish(m->pg);
        m->pg = NULL;
        return;
    }
    doc = PQgetisnull(res, 0, 0) ? NULL : json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    if (json_integer_value(json_object_get(doc, "changes")) > 0)
        log_msg(LOG_INFO, "stage", "sweep: %lld stage changes (%.0f ms)",
                (long long)json_integer_value(json_object_get(doc, "changes")), ms_since(&t0));
    json_decref(doc);
}

static void run(void *arg)
{
    struct moments *m = arg;
    const char *params[2] = {m->zone, m->catch_up};
    struct timespec t0;
    PGresult *res;
    json_t *doc;
    long long events;
    const char *from, *to;

    if (m->pg == NULL && (m->pg = open_connection(m->conninfo)) == NULL) {
        log_msg(LOG_WARNING, "moments", "no database connection; the run waits for the next "
                "period");
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_mutex_lock(&m->lock);
    m->cancel = PQgetCancel(m->pg);
    pthread_mutex_unlock(&m->lock);
    res = PQexecParams(m->pg, "SELECT crm.moments_tick((now() AT TIME ZONE $1)::date, $2::int)",
                       2, NULL, params, NULL, NULL, 0);
    pthread_mutex_lock(&m->lock);
    PQfreeCancel(m->cancel);
    m->cancel = NULL;
    pthread_mutex_unlock(&m->lock);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        log_msg(LOG_WARNING, "moments", "run failed: %s", PQerrorMessage(m->pg));
        PQclear(res);
        PQfinish(m->pg);
        m->pg = NULL;
        return;
    }
    if (PQgetisnull(res, 0, 0)) { /* another instance is running */
        PQclear(res);
        sweep_stages(m);
        return;
    }
    doc = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    events = json_integer_value(json_object_get(doc, "events"));
    from = json_string_value(json_object_get(doc, "from"));
    to = json_string_value(json_object_get(doc, "to"));
    if (events > 0 || (from != NULL && to != NULL && strcmp(from, to) != 0))
        log_msg(LOG_INFO, "moments", "%lld moment.due events for %s..%s (%.0f ms)", events,
                from ? from : "?", to ? to : "?", ms_since(&t0));
    json_decref(doc);
    sweep_stages(m);
}

/* -1: unknown to the database; 0: could not ask; 1: known. */
static int zone_known(struct moments *m)
{
    const char *params[1] = {m->zone};
    PGresult *res;
    int known = 0;
    if (m->pg == NULL && (m->pg = open_connection(m->conninfo)) == NULL)
        return 0;
    res = PQexecParams(m->pg, "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        known = strcmp(PQgetvalue(res, 0, 0), "t") == 0 ? 1 : -1;
    PQclear(res);
    return known;
}

static void free_moments(struct moments *m)
{
    pthread_mutex_destroy(&m->lock);
    PQfinish(m->pg);
    free(m->conninfo);
    free(m);
}

bool moments_start(const struct config *cfg, struct moments **out)
{
    struct moments *m;
    *out = NULL;
    if (cfg->moments_period == 0)
        return true;
    m = calloc(1, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    m->conninfo = strdup(cfg->database_url);
    snprintf(m->zone, sizeof(m->zone), "%s", cfg->moments_time_zone);
    snprintf(m->catch_up, sizeof(m->catch_up), "%d", cfg->moments_catch_up);
    if (zone_known(m) < 0) {
        log_msg(LOG_ERROR, "moments", "--moments-time-zone '%s' is not a time zone PostgreSQL "
                "knows (pg_timezone_names)", m->zone);
        free_moments(m);
        return false;
    }
    m->ticker = ticker_start(cfg->moments_period * 1000, run, m);
    if (m->ticker == NULL) {
        log_msg(LOG_ERROR, "moments", "cannot start the moments thread");
        free_moments(m);
        return false;
    }
    ticker_wake(m->ticker); /* the first run at start: days missed are caught up at once */
    *out = m;
    return true;
}

void moments_stop(struct moments *m)
{
    char err[128];
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    if (m->cancel != NULL) /* a run under way rolls back; the next start runs it again */
        PQcancel(m->cancel, err, sizeof(err));
    pthread_mutex_unlock(&m->lock);
    ticker_stop(m->ticker);
    free_moments(m);
}
