/*
 * value_schedule: one ticker; each tick asks crm.value_schedule_claim
 * (one statement on the pool) and, if this instance got the due run, runs
 * value_recompute as a live run on the same pool, logging its progress. At
 * stop, the statements of the pool under way are cancelled so that a run of
 * minutes does not hold the shutdown: it rolls back, and the schedule,
 * already moved on, is claimed again one period later (or at once by a
 * --value-schedule change).
 */
#include "value_schedule.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "store.h"
#include "ticker.h"
#include "value.h"

#define CHECK_MAX_S 30

struct value_schedule {
    struct db_pool *pool;
    int period_s;
    char owner[96];
    struct ticker *ticker;
    atomic_bool stopping;
};

static void log_progress(const char *message)
{
    log_msg(LOG_INFO, "value", "%s", message);
}

static void tick(void *arg)
{
    struct value_schedule *s = arg;
    char period[16], err[512];
    const char *params[2] = {period, s->owner};
    json_t *out = NULL, *summary = NULL;
    enum db_status st;
    if (atomic_load(&s->stopping))
        return;
    snprintf(period, sizeof(period), "%d", s->period_s);
    st = store_call(s->pool, STMT_VALUE_SCHEDULE_CLAIM, 2, params, &out, err, sizeof(err));
    if (st != DB_OK) {
        log_msg(LOG_WARNING, "value", "schedule check failed: %s", err);
        return;
    }
    bool due = json_is_true(out);
    json_decref(out);
    if (!due)
        return;
    log_msg(LOG_INFO, "value", "scheduled value run (every %d s)", s->period_s);
    st = value_recompute(s->pool, NULL, true, log_progress, &summary, err, sizeof(err));
    if (st != DB_OK)
        log_msg(LOG_WARNING, "value", "scheduled value run failed: %s", err);
    else if (json_object_get(summary, "error") != NULL)
        log_msg(LOG_WARNING, "value", "scheduled value run not applied: %s",
                json_string_value(json_object_get(summary, "error")));
    json_decref(summary);
}

bool value_schedule_start(const struct config *cfg, struct db_pool *pool,
                          struct value_schedule **out)
{
    struct value_schedule *s;
    char host[64] = "";
    *out = NULL;
    if (cfg->value_schedule == 0)
        return true;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return false;
    s->pool = pool;
    s->period_s = cfg->value_schedule;
    atomic_init(&s->stopping, false);
    gethostname(host, sizeof(host) - 1);
    snprintf(s->owner, sizeof(s->owner), "%s:%d", host, (int)getpid());
    s->ticker = ticker_start((s->period_s < CHECK_MAX_S ? s->period_s : CHECK_MAX_S) * 1000, tick,
                             s);
    if (s->ticker == NULL) {
        log_msg(LOG_ERROR, "value", "cannot start the value schedule thread");
        free(s);
        return false;
    }
    ticker_wake(s->ticker); /* a run overdue at start is not kept waiting a period */
    *out = s;
    return true;
}

void value_schedule_stop(struct value_schedule *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stopping, true);
    db_pool_cancel_busy(s->pool); /* after the HTTP drain: only a run is left */
    ticker_stop(s->ticker);
    free(s);
}
