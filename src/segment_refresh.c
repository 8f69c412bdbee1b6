/*
 * segment_refresh: see segment_refresh.h. Each tick: the recompile check
 * (one small query), then up to MAX_ROUNDS rounds of crm.segment_refresh of
 * ROUND_EVENTS feed events each, stopping at the first round that reads
 * fewer (the end of the feed) or answers busy (another instance refreshes).
 */
#include "segment_refresh.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "segment.h"
#include "ticker.h"

#define ROUND_EVENTS 5000
#define MAX_ROUNDS 20

struct segment_refresher {
    const struct config *cfg;
    PGconn *pg; /* the ticker thread's only */
    struct ticker *ticker;
    pthread_mutex_t lock;
    PGcancel *cancel; /* under lock: cancels the round under way at stop */
    bool stopping;    /* under lock */
};

static void set_cancel(struct segment_refresher *r, PGcancel *c)
{
    pthread_mutex_lock(&r->lock);
    if (r->cancel != NULL)
        PQfreeCancel(r->cancel);
    r->cancel = c;
    pthread_mutex_unlock(&r->lock);
}

static bool stopping(struct segment_refresher *r)
{
    bool s;
    pthread_mutex_lock(&r->lock);
    s = r->stopping;
    pthread_mutex_unlock(&r->lock);
    return s;
}

static bool ensure_connection(struct segment_refresher *r)
{
    PGresult *res;
    if (r->pg != NULL && PQstatus(r->pg) == CONNECTION_OK)
        return true;
    set_cancel(r, NULL);
    PQfinish(r->pg);
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *values[] = {r->cfg->database_url, "5", "crm-server-segments", NULL};
    r->pg = PQconnectdbParams(keys, values, 1);
    if (PQstatus(r->pg) != CONNECTION_OK) {
        PQfinish(r->pg);
        r->pg = NULL;
        return false;
    }
    /* A round never waits long on a lock held by a long transaction (it is
     * tried again next tick), and a shutdown waits for at most one round. */
    res = PQexec(r->pg, "SET lock_timeout = '5s'; SET statement_timeout = '300s'");
    PQclear(res);
    set_cancel(r, PQgetCancel(r->pg));
    return true;
}

/* A parameterised statement; the result, or NULL (logged) on failure. */
static PGresult *run(struct segment_refresher *r, const char *sql, int n,
                     const char *const *params, const char *what)
{
    PGresult *res = PQexecParams(r->pg, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
        if (!stopping(r)) /* a round cancelled at stop is rolled back and done again later */
            log_msg(LOG_ERROR, "segments", "%s: %s", what, PQresultErrorMessage(res));
        PQclear(res);
        return NULL;
    }
    return res;
}

/* Compile one stored rule with this server's compiler and store it (the
 * members are recomputed by crm.segment_compiled). */
static void recompile(struct segment_refresher *r, const char *id, const char *rule_text,
                      const char *version)
{
    json_error_t jerr;
    json_t *rule = json_loads(rule_text, JSON_DECODE_ANY, &jerr), *errors = json_array();
    struct segment_sql seg = {0};
    char *condition = NULL, *params_text = NULL, *deps_text = NULL;
    json_t *deps = NULL;
    PGresult *res;
    if (rule != NULL && segment_compile(rule, "/rule", &seg, errors)) {
        condition = segment_stored_condition(seg.where);
        params_text = json_dumps(seg.params, JSON_COMPACT);
        deps = segment_depends_json(seg.depends);
        deps_text = json_dumps(deps, JSON_COMPACT);
    } else {
        log_msg(LOG_WARNING, "segments", "segment %s: its stored rule does not compile any "
                "more; its members stay as they are", id);
    }
    const char *params[5] = {id, condition, params_text, deps_text, version};
    res = run(r, "SELECT crm.segment_compiled($1::uuid, $2, "
                 "ARRAY(SELECT jsonb_array_elements_text($3::jsonb)), "
                 "ARRAY(SELECT jsonb_array_elements_text($4::jsonb)), $5::int)",
              5, params, "storing a compiled rule");
    if (res != NULL && !PQgetisnull(res, 0, 0))
        log_msg(LOG_INFO, "segments", "segment %s compiled (compiler %s): %s", id, version,
                PQgetvalue(res, 0, 0));
    PQclear(res);
    segment_sql_free(&seg);
    free(condition);
    free(params_text);
    free(deps_text);
    json_decref(deps);
    json_decref(rule);
    json_decref(errors);
}

static void recompile_stale(struct segment_refresher *r)
{
    char version[16];
    const char *params[1] = {version};
    PGresult *res;
    snprintf(version, sizeof(version), "%d", SEGMENT_COMPILER_VERSION);
    res = run(r, "SELECT segment_id, rule FROM crm.segments_to_compile($1::int)", 1, params,
              "looking for rules to compile");
    if (res == NULL)
        return;
    for (int i = 0; i < PQntuples(res); i++)
        recompile(r, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), version);
    PQclear(res);
}

static void tick(void *ctx)
{
    struct segment_refresher *r = ctx;
    char limit[16], sweep[16];
    const char *params[2] = {limit, sweep};
    if (!ensure_connection(r))
        return;
    recompile_stale(r);
    snprintf(limit, sizeof(limit), "%d", ROUND_EVENTS);
    snprintf(sweep, sizeof(sweep), "%d", r->cfg->segment_time_sweep);
    for (int round = 0; round < MAX_ROUNDS && !stopping(r); round++) {
        PGresult *res = run(r, "SELECT crm.segment_refresh($1::int, $2::int)", 2, params,
                            "refreshing segment members");
        json_t *out;
        long long events;
        if (res == NULL)
            return;
        out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
        PQclear(res);
        if (out == NULL || json_is_true(json_object_get(out, "busy"))) {
            json_decref(out);
            return;
        }
        events = json_integer_value(json_object_get(out, "events"));
        if (!json_is_null(json_object_get(out, "value_run")) ||
            json_is_true(json_object_get(out, "swept")))
            log_msg(LOG_INFO, "segments", "members refreshed over every customer (%s): "
                    "%lld entered, %lld exited",
                    json_is_true(json_object_get(out, "swept")) ? "time sweep" : "value run",
                    json_integer_value(json_object_get(out, "entered")),
                    json_integer_value(json_object_get(out, "exited")));
        json_decref(out);
        if (events < ROUND_EVENTS)
            return;
    }
}

struct segment_refresher *segment_refresher_start(const struct config *cfg)
{
    struct segment_refresher *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->cfg = cfg;
    pthread_mutex_init(&r->lock, NULL);
    if (cfg->segment_refresh_ms <= 0)
        return r;
    r->ticker = ticker_start(cfg->segment_refresh_ms, tick, r);
    if (r->ticker == NULL) {
        log_msg(LOG_ERROR, "segments", "cannot start the membership refresher");
        pthread_mutex_destroy(&r->lock);
        free(r);
        return NULL;
    }
    log_msg(LOG_INFO, "segments", "membership refresher every %d ms", cfg->segment_refresh_ms);
    return r;
}

void segment_refresher_stop(struct segment_refresher *r)
{
    char err[256];
    if (r == NULL)
        return;
    /* A long round (a value run's full diff) would hold the shutdown: it is
     * cancelled, rolled back, and done again by the next round anywhere. */
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    if (r->cancel != NULL)
        PQcancel(r->cancel, err, sizeof(err));
    pthread_mutex_unlock(&r->lock);
    ticker_stop(r->ticker);
    set_cancel(r, NULL);
    PQfinish(r->pg);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
