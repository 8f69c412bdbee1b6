/*
 * migrate: see include/migrate.h. Anything that fails rolls the whole
 * transaction back (pending migrations and functions alike) and stops the
 * server from starting, with PostgreSQL's message.
 *
 * Replacing a trigger takes a SHARE ROW EXCLUSIVE lock on its table, which
 * waits for the writes of servers already running (and a view's
 * replacement waits for its readers). So the transaction sets a
 * lock_timeout: a lock it cannot get soon, or a deadlock with a running
 * server's transaction, rolls it back and it is tried again, never leaving
 * a running server's writes queued behind it for long.
 */
#include "migrate.h"

#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIGRATION_LOCK_KEY "7412093001"
#define ATTEMPTS 20

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* Runs sql; on failure copies the SQLSTATE into state (if given). A file
 * of comments only (PGRES_EMPTY_QUERY) is fine. */
static bool exec_state(PGconn *pg, const char *sql, char state[6])
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
    if (!ok) {
        const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state != NULL)
            snprintf(state, 6, "%s", s != NULL ? s : "");
        log_msg(LOG_ERROR, "migrate", "%s", PQerrorMessage(pg));
    }
    PQclear(res);
    return ok;
}

static bool exec_ok(PGconn *pg, const char *sql)
{
    return exec_state(pg, sql, NULL);
}

static bool is_applied(PGconn *pg, const char *name, bool *applied)
{
    const char *params[1] = {name};
    PGresult *res = PQexecParams(pg, "SELECT 1 FROM public.crm_schema_migrations WHERE version = $1",
                                 1, NULL, params, NULL, NULL, 0);
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (ok)
        *applied = PQntuples(res) > 0;
    else
        log_msg(LOG_ERROR, "migrate", "%s", PQerrorMessage(pg));
    PQclear(res);
    return ok;
}

static bool record(PGconn *pg, const char *name)
{
    const char *params[1] = {name};
    PGresult *res = PQexecParams(pg, "INSERT INTO public.crm_schema_migrations (version) VALUES ($1)",
                                 1, NULL, params, NULL, NULL, 0);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        log_msg(LOG_ERROR, "migrate", "%s", PQerrorMessage(pg));
    PQclear(res);
    return ok;
}

/* One attempt: pending migrations, then the functions files, committed
 * together. *applied counts the migrations applied; state holds the
 * SQLSTATE of a failure. */
static bool apply_all(PGconn *pg, int *applied, char state[6])
{
    *applied = 0;
    state[0] = '\0';
    if (!exec_state(pg, "BEGIN; SET LOCAL lock_timeout = '2s'", state))
        return false;
    for (int i = 0; i < crm_migration_count; i++) {
        bool done = false;
        if (!is_applied(pg, crm_migrations[i].name, &done))
            goto fail;
        if (done)
            continue;
        if (!exec_state(pg, crm_migrations[i].sql, state) || !record(pg, crm_migrations[i].name)) {
            log_msg(LOG_ERROR, "migrate", "%s failed, rolled back", crm_migrations[i].name);
            goto fail;
        }
        log_msg(LOG_INFO, "migrate", "applying %s", crm_migrations[i].name);
        (*applied)++;
    }
    for (int i = 0; i < crm_function_count; i++) {
        if (!exec_state(pg, crm_functions[i].sql, state)) {
            log_msg(LOG_ERROR, "migrate", "%s failed, rolled back", crm_functions[i].name);
            goto fail;
        }
    }
    if (exec_state(pg, "COMMIT", state))
        return true;
fail:
    exec_ok(pg, "ROLLBACK");
    return false;
}

bool migrate_apply(PGconn *pg)
{
    bool ok = false;
    int applied = 0;
    char state[6] = "";
    double t0;
    if (!exec_ok(pg, "SELECT pg_advisory_lock(" MIGRATION_LOCK_KEY ")"))
        return false;
    t0 = now_ms();
    if (exec_ok(pg, "SET client_min_messages = warning; "
                    "CREATE TABLE IF NOT EXISTS public.crm_schema_migrations ("
                    " version text PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())")) {
        for (int attempt = 1; attempt <= ATTEMPTS; attempt++) {
            ok = apply_all(pg, &applied, state);
            /* lock_not_available (lock_timeout), deadlock_detected,
             * serialization_failure: a running server's transaction was in
             * the way; try again. */
            if (ok || attempt == ATTEMPTS ||
                (strcmp(state, "55P03") != 0 && strcmp(state, "40P01") != 0 &&
                 strcmp(state, "40001") != 0))
                break;
            log_msg(LOG_WARNING, "migrate", "attempt %d rolled back (%s), trying again", attempt,
                    state);
            usleep(100000u * (unsigned)(attempt < 10 ? attempt : 10));
        }
    }
    if (ok)
        log_msg(LOG_INFO, "migrate",
                "%d migration(s) applied, %d functions file(s) applied in %.0f ms", applied,
                crm_function_count, now_ms() - t0);
    exec_ok(pg, "SELECT pg_advisory_unlock(" MIGRATION_LOCK_KEY ")");
    return ok;
}
