/*
 * store: the service's queries. Owns the prepared-statement catalogue and
 * turns validated requests into calls of the crm.* SQL functions (one
 * round trip each) and their JSON results. No HTTP here: callers map
 * db_status to responses.
 */
#ifndef CRM_STORE_H
#define CRM_STORE_H

#include <jansson.h>

#include "auth.h"
#include "db.h"
#include "validate.h"

/* The statement catalogue: one prepared statement per operation, named by
 * this enum and prepared on every connection under the row's name. Callers
 * run them with store_call (or the typed store_* functions below), never by
 * a name string. */
enum store_stmt {
    STMT_PING,
    STMT_RESOLVE,
    STMT_PROFILE,
    STMT_LOOKUP,
    STMT_AUDIT_READS,
    STMT_INGEST_BATCH,
    STMT_AUTHENTICATE,
    STMT_KEY_CREATE,
    STMT_KEY_LIST,
    STMT_KEY_REVOKE,
    STMT_KEY_ME,
    STMT_PATCH_TRAITS,
    STMT_INGEST,
    STMT_SEGMENT_CREATE,
    STMT_SEGMENT_UPDATE,
    STMT_CUSTOMER_SEGMENTS,
    STMT_SEGMENT_GET,
    STMT_SEGMENT_LIST,
    STMT_SEGMENT_DELETE,
    STMT_MERGE_HISTORY,
    STMT_MANUAL_MERGE,
    STMT_UNMERGE,
    STMT_BLOCKED_LIST,
    STMT_BLOCKED_ADD,
    STMT_BLOCKED_REMOVE,
    STMT_LIMITS_GET,
    STMT_LIMITS_SET,
    STMT_CONFLICTS_LIST,
    STMT_PREFERENCES_GET,
    STMT_PREFERENCES_PATCH,
    STMT_CONSENTS_GET,
    STMT_CONSENT_RECORD,
    STMT_CONTACT_DECISION,
    STMT_MOMENTS,
    STMT_MOMENTS_RUN,
    STMT_CUSTOMER_EXPORT,
    STMT_CUSTOMER_ERASE,
    STMT_TIMELINE,
    STMT_SEGMENT_EXPORT_AUDIT,
    STMT_SEGMENT_EXPORT_AUDIT_ADD,
    STMT_PARTNER_CUSTOMER,
    STMT_EVENT_FEED,
    STMT_WEBHOOK_CREATE,
    STMT_WEBHOOK_LIST,
    STMT_WEBHOOK_GET,
    STMT_WEBHOOK_UPDATE,
    STMT_WEBHOOK_DELETE,
    STMT_WEBHOOK_DELIVERIES,
    STMT_WEBHOOK_REPLAY,
    STMT_VALUE_RUNS,
    STMT_VALUE_SETTINGS_GET,
    STMT_VALUE_SETTINGS_PATCH,
    STMT_VALUE_SCHEDULE_CLAIM,
    STMT_CASE_CREATE,
    STMT_CASE_LIST,
    STMT_CASE_GET,
    STMT_CASE_PATCH,
    STMT_IDENTIFIER_DETACH,
    STMT_NEVER_MERGE_LIST,
    STMT_NEVER_MERGE_ADD,
    STMT_NEVER_MERGE_REMOVE,
    STMT_SUMMARY,
    STMT_NBA_SETTINGS_GET,
    STMT_NBA_SETTINGS_PUT,
    STMT_MOMENT_SETTINGS_GET,
    STMT_MOMENT_SETTINGS_PUT,
    STMT_MOMENT_TRAIT_ERRORS,
    STMT_FX_RATES_GET,
    STMT_FX_RATES_PUT,
    STMT_SURVIVORSHIP_GET,
    STMT_SURVIVORSHIP_PUT,
    STMT_LOOKALIKE_NEEDS,
    STMT_LOOKALIKE_FIT_GET,
    STMT_LOOKALIKE_FIT_SAVE,
    STMT_COUNT
};
extern const struct db_statement store_statements[STMT_COUNT];
extern const int store_statement_count;

/* Run a catalogue statement answering one json value (db_call_json). */
enum db_status store_call(struct db_pool *pool, enum store_stmt stmt, int nparams,
                          const char *const *params, json_t **out, char *err, size_t errlen);

struct timeline_query {
    int limit;
    const char *cursor_at; /* NULL for the first page */
    const char *cursor_id;
    const char *channel, *type, *since, *until; /* NULL when not filtered */
};

enum db_status store_ping(struct db_pool *pool, char *err, size_t errlen);

/* {customer_id, created, merged_ids, customer} */
enum db_status store_resolve(struct db_pool *pool, const struct resolve_request *req,
                             json_t **out, char *err, size_t errlen);

/* A profile document as the database's JSON text (passed on unparsed) and
 * the fields the server needs from it. doc NULL: no such customer. */
struct profile_text {
    char *doc;
    char *customer_id; /* the survivor */
    char *merged_into; /* set when the id asked for was absorbed */
    bool gone;         /* doc is the erased-customer document */
};
void profile_text_clear(struct profile_text *p);

/* The (cached) profile of a customer id or of the owner of an identifier.
 * Not audited: the caller adds the audit row (audit.h). */
enum db_status store_profile(struct db_pool *pool, const char *customer_id,
                             struct profile_text *out, char *err, size_t errlen);
enum db_status store_lookup(struct db_pool *pool, const struct identifier *id,
                            struct profile_text *out, char *err, size_t errlen);
enum db_status store_patch_traits(struct db_pool *pool, const char *customer_id,
                                  const struct traits_request *req, json_t **out, char *err,
                                  size_t errlen);

/* {status, interaction_id, customer_id[, ignored, conflicts]}: status is
 * created, duplicate (the same source and external_id was stored before),
 * not_found (customer_id names no customer) or blocked (every identifier was
 * a blocked placeholder: nothing written; ignored lists them). */
enum db_status store_ingest(struct db_pool *pool, const struct interaction_request *req,
                            json_t **out, char *err, size_t errlen);

/*
 * Store the valid items of a batch (reqs[i] NULL for an item that failed
 * validation) in one transaction: one call of crm.ingest_batch, or, if that
 * fails, one ingest per item each under its own savepoint. results[i]
 * receives the item's JSON result (as store_ingest, any of its statuses) or
 * stays NULL if the item was skipped or could not be stored.
 */
enum db_status store_ingest_batch(struct db_pool *pool, struct interaction_request *const *reqs,
                                  int count, json_t **results, char *err, size_t errlen);

/* {customer_id, items, next_cursor_at, next_cursor_id} or NULL when unknown.
 * Not audited: the caller adds the audit row. */
enum db_status store_timeline(struct db_pool *pool, const char *customer_id,
                              const struct timeline_query *q, json_t **out, char *err,
                              size_t errlen);

#endif
