/*
 * migrate: brings the database to this binary's schema. In one transaction:
 * the versioned files sql/NNN_*.sql not applied yet (tables, indexes,
 * constraints, data changes), in name order, each recorded in
 * public.crm_schema_migrations; then every sql/functions/<domain>.sql file (the
 * crm.* functions, triggers and views, one current definition each), in
 * meson.build's order, on every run. Both are compiled into the binary.
 * Safe to run from several processes at once (an advisory lock serialises
 * them; lock waits on busy tables time out and the transaction is tried
 * again) and to run again (applied versions are skipped, the functions
 * files are idempotent).
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
extern const struct migration crm_functions[];
extern const int crm_function_count;

/* Apply pending migrations, then the functions files; prints what it does
 * to stderr. */
bool migrate_apply(PGconn *pg);

#endif
