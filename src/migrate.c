/*
 * migrate: see include/migrate.h. A migration that fails rolls back as a
 * whole and stops the server from starting, with PostgreSQL's message.
 */
#include "migrate.h"

#include <stdio.h>
#include <string.h>

#define MIGRATION_LOCK_KEY "7412093001"

static bool exec_ok(PGconn *pg, const char *sql)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "migrate: %s", PQerrorMessage(pg));
    PQclear(res);
    return ok;
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
        fprintf(stderr, "migrate: %s", PQerrorMessage(pg));
    PQclear(res);
    return ok;
}

static bool apply_one(PGconn *pg, const struct migration *m)
{
    const char *params[1] = {m->name};
    PGresult *res;
    bool ok;
    if (!exec_ok(pg, "BEGIN"))
        return false;
    if (!exec_ok(pg, m->sql)) {
        fprintf(stderr, "migrate: %s failed, rolled back\n", m->name);
        exec_ok(pg, "ROLLBACK");
        return false;
    }
    res = PQexecParams(pg, "INSERT INTO public.crm_schema_migrations (version) VALUES ($1)", 1,
                       NULL, params, NULL, NULL, 0);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok || !exec_ok(pg, "COMMIT")) {
        exec_ok(pg, "ROLLBACK");
        return false;
    }
    fprintf(stderr, "migrate: applied %s\n", m->name);
    return true;
}

bool migrate_apply(PGconn *pg)
{
    bool ok = true;
    if (!exec_ok(pg, "SELECT pg_advisory_lock(" MIGRATION_LOCK_KEY ")"))
        return false;
    ok = exec_ok(pg, "SET client_min_messages = warning; "
                     "CREATE TABLE IF NOT EXISTS public.crm_schema_migrations ("
                     " version text PRIMARY KEY,"
                     " applied_at timestamptz NOT NULL DEFAULT now())");
    for (int i = 0; ok && i < crm_migration_count; i++) {
        bool applied = false;
        ok = is_applied(pg, crm_migrations[i].name, &applied);
        if (ok && !applied)
            ok = apply_one(pg, &crm_migrations[i]);
    }
    exec_ok(pg, "SELECT pg_advisory_unlock(" MIGRATION_LOCK_KEY ")");
    return ok;
}
