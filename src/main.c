/*
 * main: start-up and shutdown. Reads the configuration, waits for the
 * database, applies migrations, opens the pool and the HTTP server, then
 * waits for SIGTERM/SIGINT and drains in-flight requests before exiting.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "audit.h"
#include "config.h"
#include "db.h"
#include "handlers.h"
#include "health.h"
#include "http.h"
#include "log.h"
#include "migrate.h"
#include "moments.h"
#include "value_schedule.h"
#include "segment_refresh.h"
#include "store.h"
#include "textutil.h"
#include "value.h"
#include "webhook.h"

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

/* Connect, retrying until the database answers or wait_s has passed. */
static PGconn *connect_with_wait(const char *conninfo, int wait_s)
{
    time_t deadline = time(NULL) + wait_s;
    for (;;) {
        PGconn *pg = db_connect(conninfo);
        if (pg != NULL)
            return pg;
        if (time(NULL) >= deadline)
            return NULL;
        db_sleep_ms(500);
    }
}

/* The read routes' pool size: as configured, or 3 per CPU but at least one
 * per HTTP worker thread (a worker waiting for a read connection costs two
 * extra context switches per request: 10-15 % more server CPU per profile
 * GET with 8 workers and 6 connections than with 8 and 8); at most the main
 * pool's size. */
static int read_pool_size(const struct config *cfg)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int workers = (int)http_worker_threads(cfg->http_threads);
    int n = cfg->read_pool_size > 0 ? cfg->read_pool_size : (int)(cpus > 0 ? cpus * 3 : 6);
    if (cfg->read_pool_size <= 0 && n < workers)
        n = workers;
    return n < cfg->pool_size ? n : cfg->pool_size;
}

/* A pool of the server's statements, prepared unless --db-prepared 0. */
static struct db_pool *open_pool(const struct config *cfg, const char *conninfo, int size)
{
    struct db_pool *pool = db_pool_new(conninfo, size, store_statements, store_statement_count);
    db_pool_set_prepared(pool, cfg->db_prepared != 0);
    return pool;
}

/* Opens the pools' connections in the background after start-up: the read
 * pool first (call-centre reads), then the primary's. */
struct warm_up {
    struct app *app;
    atomic_bool stop;
    pthread_t thread;
    bool started;
};

static void *warm_up_main(void *arg)
{
    struct warm_up *w = arg;
    int reads = db_pool_warm(w->app->reads, &w->stop);
    int writes = db_pool_warm(w->app->pool, &w->stop);
    log_msg(LOG_INFO, "main", "opened %d read and %d primary connections ahead of use", reads,
            writes);
    return NULL;
}

static struct warm_up warm_up;
static struct webhooks *webhooks;
static struct moments *moments;
static struct value_schedule *value_schedule;
static struct segment_refresher *refresher;

static void start_warm_up(struct app *app)
{
    warm_up.app = app;
    atomic_init(&warm_up.stop, false);
    warm_up.started = pthread_create(&warm_up.thread, NULL, warm_up_main, &warm_up) == 0;
}

/* After the HTTP server stopped: flush the read audit, close the pools. */
static void stop_app(struct app *app)
{
    if (warm_up.started) {
        atomic_store(&warm_up.stop, true);
        pthread_join(warm_up.thread, NULL);
        warm_up.started = false;
    }
    webhooks_stop(webhooks); /* within --webhook-timeout: signalled at SIGTERM */
    webhooks = NULL;
    moments_stop(moments);
    moments = NULL;
    value_schedule_stop(value_schedule);
    value_schedule = NULL;
    segment_refresher_stop(refresher); /* after the round under way */
    refresher = NULL;
    health_stop(app->health);
    audit_free(app->audit);
    access_free(app->access);
    if (app->reads != app->replica)
        db_pool_free(app->reads);
    db_pool_free(app->replica);
    db_pool_free(app->pool);
}

static void print_progress(const char *message)
{
    log_msg(LOG_INFO, "recompute-value", "%s", message);
}

/* The recompute-value subcommand: one run, summary on stdout. */
static int recompute_value_command(const struct config *cfg)
{
    struct db_pool *pool;
    json_t *summary = NULL;
    char err[512];
    enum db_status st;
    if (cfg->as_of[0] != '\0' && !rfc3339_valid(cfg->as_of)) {
        log_msg(LOG_ERROR, "main", "--as-of must be an RFC 3339 timestamp with offset");
        return 2;
    }
    pool = open_pool(cfg, cfg->database_url, 1);
    st = value_recompute(pool, cfg->as_of[0] ? cfg->as_of : NULL,
                         cfg->live >= 0 ? cfg->live == 1 : cfg->as_of[0] == '\0', print_progress,
                         &summary, err, sizeof(err));
    db_pool_free(pool);
    if (st != DB_OK) {
        log_msg(LOG_ERROR, "main", "recompute failed: %s", err);
        return 1;
    }
    json_dumpf(summary, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    fputc('\n', stdout);
    /* a fit that did not converge: recorded as a failed run, nothing applied */
    int rc = strcmp(json_string_value(json_object_get(summary, "status")) ?: "", "failed") == 0;
    json_decref(summary);
    return rc;
}

int main(int argc, char **argv)
{
    struct config cfg;
    char err[256];
    struct app app = {0};
    struct http_server *server;
    sigset_t stop_signals;
    int sig, left;

    if (!config_load(&cfg, argc, argv, env_lookup, err, sizeof(err))) {
        log_msg(LOG_ERROR, "main", "%s", err);
        return 2;
    }
    if (cfg.help) {
        fputs(config_usage(), stdout);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);

    /* Migrations (unless --no-migrate), then the bootstrap admin key, which
     * needs only a transaction-scoped lock and so also works through
     * PgBouncer in transaction mode with --no-migrate. */
    if (!cfg.no_migrate || cfg.migrate_only || getenv("CRM_BOOTSTRAP_ADMIN_KEY") != NULL) {
        PGconn *pg = connect_with_wait(cfg.database_url, cfg.db_wait);
        bool ok = true;
        if (pg == NULL) {
            log_msg(LOG_ERROR, "main", "database not reachable after %d s", cfg.db_wait);
            return 1;
        }
        if (!cfg.no_migrate || cfg.migrate_only)
            ok = migrate_apply(pg);
        if (ok && getenv("CRM_BOOTSTRAP_ADMIN_KEY") != NULL && !cfg.migrate_only)
            ok = access_bootstrap(pg, getenv("CRM_BOOTSTRAP_ADMIN_KEY"));
        PQfinish(pg);
        if (!ok)
            return 1;
        if (cfg.migrate_only)
            return 0;
    }

    if (cfg.recompute_value)
        return recompute_value_command(&cfg);

    /* Block the stop signals before any thread starts, so only sigwait sees them. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    app.cfg = &cfg;
    app.pool = open_pool(&cfg, cfg.database_url, cfg.pool_size);
    if (cfg.replica_url[0] != '\0') {
        app.replica = open_pool(&cfg, cfg.replica_url, read_pool_size(&cfg));
        db_pool_set_fallback(app.replica, app.pool);
        app.reads = app.replica;
    } else {
        /* Reads are CPU work: a few connections per core serve them best
         * (more only add preemption: p99 266 ms with 16, 12 ms with 6 on 2
         * cores). Writes mostly wait for the WAL flush and keep the big pool. */
        app.reads = open_pool(&cfg, cfg.database_url, read_pool_size(&cfg));
    }
    app.access = access_new(app.pool, cfg.rate_limit);
    if (app.replica != NULL)
        access_set_fallback(app.access, app.replica);
    app.audit = audit_new(app.pool, cfg.audit_flush_ms);
    app.health = health_start(cfg.database_url);
    if (app.health == NULL) {
        stop_app(&app);
        return 1;
    }
    /* before serving: it checks the time zone with the database */
    if (!moments_start(&cfg, &moments)) {
        stop_app(&app);
        return 1;
    }
    if (!value_schedule_start(&cfg, app.pool, &value_schedule)) {
        stop_app(&app);
        return 1;
    }
    server = http_start(&app);
    if (server == NULL) {
        stop_app(&app);
        return 1;
    }
    webhooks = webhooks_start(&cfg);
    if (webhooks == NULL) {
        http_drain_and_stop(server, 0);
        stop_app(&app);
        return 1;
    }
    refresher = segment_refresher_start(&cfg);
    if (refresher == NULL) {
        http_drain_and_stop(server, 0);
        stop_app(&app);
        return 1;
    }
    log_msg(LOG_INFO, "main",
            "serving on %s://%s%s%s:%d (pool %d, http threads %u, body limit %zu)",
            cfg.tls_cert[0] != '\0' ? "https" : "http", strchr(cfg.listen, ':') ? "[" : "",
            cfg.listen, strchr(cfg.listen, ':') ? "]" : "", cfg.port, cfg.pool_size,
            http_worker_threads(cfg.http_threads), cfg.body_limit);
    log_msg(LOG_INFO, "main", "console on %s://%s%s%s:%d/console/ (sign in with an API key)",
            cfg.tls_cert[0] != '\0' ? "https" : "http", strchr(cfg.listen, ':') ? "[" : "",
            cfg.listen, strchr(cfg.listen, ':') ? "]" : "", cfg.port);
    start_warm_up(&app);

    sigwait(&stop_signals, &sig);
    log_msg(LOG_INFO, "main", "%s received, draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    webhooks_signal_stop(webhooks); /* they stop while the requests drain */
    left = http_drain_and_stop(server, cfg.drain_timeout);
    stop_app(&app);
    if (left > 0) {
        log_msg(LOG_WARNING, "main", "%d requests still running after %d s; their statements "
                "were cancelled", left, cfg.drain_timeout);
        return 1;
    }
    log_msg(LOG_INFO, "main", "stopped cleanly");
    return 0;
}
