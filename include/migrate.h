/*
 * migrate: applies the versioned SQL files of sql/ (compiled into the
 * binary) in name order, each in its own transaction, recording them in
 * public.crm_schema_migrations. Safe to run from several processes at once
 * (an advisory lock serialises them) and to run again (applied versions
 * are skipped).
 */
#ifndef CRM_MIGRATE_H
#define CRM_MIGRATE_H

#include <libpq-fe.h>
#include <stdbool.h>

struct migration {
    const char *name;
    const char *sql;
};

extern const struct migration crm_migrations[];
extern const int crm_migration_count;

/* Apply pending migrations; prints what it does to stderr. */
bool migrate_apply(PGconn *pg);

#endif
