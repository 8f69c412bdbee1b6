/*
 * health: a thread that runs SELECT 1 on the primary once a second on its
 * own connection (re-opened after a failure, connect_timeout 2 s; the query
 * is sent asynchronously and abandoned after 2 s) and publishes the time of
 * the last success. /ready reads that: no request ever waits for the
 * database to say whether the database is there.
 */
#include "health.h"

#include "log.h"
#include "ticker.h"

#include <libpq-fe.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK_TIMEOUT_MS 2000

struct health {
    char *conninfo;
    PGconn *pg;                 /* the checker's connection (its thread only) */
    atomic_llong last_ok_ms;    /* CLOCK_MONOTONIC ms of the last success; 0 = none */
    atomic_bool ok;             /* the last check succeeded */
    atomic_bool stopping;       /* SIGTERM received */
    struct ticker *checker;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until pg's socket is ready for events or the deadline; false on
 * timeout or error. */
static bool wait_socket(PGconn *pg, short events, long long deadline)
{
    struct pollfd p = {.fd = PQsocket(pg), .events = events};
    long long left = deadline - now_ms();
    if (p.fd < 0 || left <= 0)
        return false;
    return poll(&p, 1, (int)left) > 0;
}

/* SELECT 1 on h->pg, at most CHECK_TIMEOUT_MS; the connection is dropped on
 * any failure. */
static bool check_once(struct health *h)
{
    long long deadline = now_ms() + CHECK_TIMEOUT_MS;
    PGresult *res;
    bool ok = false;
    if (h->pg != NULL && PQstatus(h->pg) != CONNECTION_OK) {
        PQfinish(h->pg);
        h->pg = NULL;
    }
    if (h->pg == NULL) {
        const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
        const char *values[] = {h->conninfo, "2", "crm-server-health", NULL};
        h->pg = PQconnectdbParams(keys, values, 1);
        if (PQstatus(h->pg) != CONNECTION_OK) {
            PQfinish(h->pg);
            h->pg = NULL;
            return false;
        }
    }
    if (PQsetnonblocking(h->pg, 1) != 0 || !PQsendQuery(h->pg, "SELECT 1"))
        goto out;
    while (PQflush(h->pg) == 1)
        if (!wait_socket(h->pg, POLLOUT | POLLIN, deadline) || !PQconsumeInput(h->pg))
            goto out;
    for (;;) {
        if (!PQconsumeInput(h->pg))
            goto out;
        if (!PQisBusy(h->pg))
            break;
        if (!wait_socket(h->pg, POLLIN, deadline))
            goto out;
    }
    while ((res = PQgetResult(h->pg)) != NULL) {
        ok = PQresultStatus(res) == PGRES_TUPLES_OK;
        PQclear(res);
    }
out:
    if (h->pg != NULL)
        PQsetnonblocking(h->pg, 0);
    if (!ok && h->pg != NULL) { /* unknown state: start afresh next time */
        PQfinish(h->pg);
        h->pg = NULL;
    }
    return ok;
}

static void record(struct health *h, bool ok)
{
    if (ok)
        atomic_store(&h->last_ok_ms, now_ms());
    if (ok != atomic_load(&h->ok))
        log_msg(ok ? LOG_INFO : LOG_WARNING, "health", "the database is %s",
                ok ? "reachable again" : "unreachable");
    atomic_store(&h->ok, ok);
}

static void check(void *arg)
{
    struct health *h = arg;
    record(h, check_once(h));
}

struct health *health_start(const char *conninfo)
{
    struct health *h = calloc(1, sizeof(*h));
    h->conninfo = strdup(conninfo);
    atomic_init(&h->last_ok_ms, 0);
    atomic_init(&h->ok, true); /* so that a first failure is logged */
    atomic_init(&h->stopping, false);
    check(h);
    h->checker = ticker_start(HEALTH_INTERVAL_MS, check, h);
    if (h->checker == NULL) {
        log_msg(LOG_ERROR, "health", "cannot start the checker thread");
        PQfinish(h->pg);
        free(h->conninfo);
        free(h);
        return NULL;
    }
    return h;
}

bool health_database_ok(struct health *h)
{
    long long last = atomic_load(&h->last_ok_ms);
    return atomic_load(&h->ok) && last != 0 && now_ms() - last < HEALTH_STALE_MS;
}

void health_set_stopping(struct health *h)
{
    atomic_store(&h->stopping, true);
}

bool health_stopping(struct health *h)
{
    return atomic_load(&h->stopping);
}

void health_stop(struct health *h)
{
    if (h == NULL)
        return;
    ticker_stop(h->checker);
    PQfinish(h->pg);
    free(h->conninfo);
    free(h);
}
