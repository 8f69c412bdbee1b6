/*
 * access: verifies API keys against crm.api_keys (SHA-256 compare in the
 * database) and remembers valid keys for a short time, so that the hot
 * paths stay at one database round trip. A revoked key stops working
 * within ACCESS_CACHE_SECONDS (at once on the server that revoked it). Also installs the bootstrap admin key.
 */
#ifndef CRM_ACCESS_H
#define CRM_ACCESS_H

#include <libpq-fe.h>

#include "auth.h"
#include "db.h"

#define ACCESS_CACHE_SECONDS 30

enum access_result { ACCESS_OK, ACCESS_NO_KEY, ACCESS_BAD_KEY, ACCESS_UNAVAILABLE, ACCESS_ERROR };

struct access;

/* rate_per_second 0 turns rate limiting off. */
struct access *access_new(struct db_pool *pool, int rate_per_second);
void access_free(struct access *access);

/* Check keys on this replica when the primary cannot answer, so that reads
 * the replica serves go on during a primary outage (a key revoked in the
 * last moments before the outage may still work until the replica has it). */
void access_set_fallback(struct access *access, struct db_pool *replica);

/* replica_ok: the request's reads go to the replica anyway (see
 * access_set_fallback), so its key may be checked there first. */
enum access_result access_check(struct access *access, const char *authorization,
                                const char *x_api_key, bool replica_ok, struct principal *out);

/* Take one request from the key's token bucket (rate per second, burst of
 * twice that). False when empty; *retry_after is then the whole seconds
 * until a token is back. */
bool access_rate_take(struct access *access, const char *key_id, int *retry_after);

/* Forget the cached verification of the key with this id (just revoked):
 * this server refuses it from its next request on. */
void access_forget(struct access *access, const char *key_id);

/* Install key as the admin key if no admin key exists yet. Prints what it did. */
bool access_bootstrap(PGconn *pg, const char *key);

#endif
