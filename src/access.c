/*
 * access: a small table of recently verified keys (exact key text ->
 * principal, with an expiry) and the per-key rate limit (ratelimit.h),
 * guarded by a mutex. Misses go to the database through the "authenticate"
 * statement; only successes are kept.
 */
#include "access.h"

#include "log.h"
#include "ratelimit.h"
#include "store.h"
#include "textutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The key cache is set-associative: a key can only be in the CACHE_WAYS
 * entries of the set its text hashes to, so a lookup compares at most
 * that many keys, and up to CACHE_SETS x CACHE_WAYS keys stay verified
 * (128 in one list scanned whole before: a 129th busy key sent a request
 * per key to the database). */
#define CACHE_SETS 128
#define CACHE_WAYS 8

struct cache_entry {
    char key[API_KEY_LEN + 1];
    struct principal who;
    time_t expires;
};

/* Rate-limit buckets: enough for every key a deployment has, so that none
 * is evicted while in use (see ratelimit.h). */
#define RATE_SLOTS 4096

struct access {
    struct db_pool *pool;
    struct db_pool *fallback; /* a read replica for key checks while the primary is away */
    pthread_mutex_t lock;
    struct cache_entry cache[CACHE_SETS][CACHE_WAYS];
    struct ratelimit *rate; /* NULL: no rate limit */
};

struct access *access_new(struct db_pool *pool, int rate_per_second)
{
    struct access *a = calloc(1, sizeof(*a));
    a->pool = pool;
    if (rate_per_second > 0)
        a->rate = ratelimit_new(rate_per_second, RATE_SLOTS);
    pthread_mutex_init(&a->lock, NULL);
    return a;
}

void access_set_fallback(struct access *a, struct db_pool *replica)
{
    a->fallback = replica;
}

void access_free(struct access *a)
{
    if (a == NULL)
        return;
    pthread_mutex_destroy(&a->lock);
    ratelimit_free(a->rate);
    free(a);
}

static struct cache_entry *cache_set(struct access *a, const char *key)
{
    return a->cache[text_hash(key) % CACHE_SETS];
}

static bool cache_get(struct access *a, const char *key, struct principal *out)
{
    struct cache_entry *set = cache_set(a, key);
    bool hit = false;
    time_t now = time(NULL);
    pthread_mutex_lock(&a->lock);
    for (int i = 0; i < CACHE_WAYS && !hit; i++) {
        if (set[i].expires > now && strcmp(set[i].key, key) == 0) {
            *out = set[i].who;
            hit = true;
        }
    }
    pthread_mutex_unlock(&a->lock);
    return hit;
}

static void cache_put(struct access *a, const char *key, const struct principal *who)
{
    struct cache_entry *set = cache_set(a, key);
    int victim = 0;
    pthread_mutex_lock(&a->lock);
    for (int i = 1; i < CACHE_WAYS; i++) /* the entry expiring first goes */
        if (set[i].expires < set[victim].expires)
            victim = i;
    memcpy(set[victim].key, key, API_KEY_LEN + 1);
    set[victim].who = *who;
    set[victim].expires = time(NULL) + ACCESS_CACHE_SECONDS;
    pthread_mutex_unlock(&a->lock);
}

enum access_result access_check(struct access *a, const char *authorization,
                                const char *x_api_key, bool replica_ok, struct principal *out)
{
    char key[API_KEY_LEN + 1], key_id[UUID_TEXT_LEN + 1], err[256];
    const char *params[2];
    json_t *doc = NULL;
    enum db_status st;
    const char *ns;

    if (authorization == NULL && x_api_key == NULL)
        return ACCESS_NO_KEY;
    if (!api_key_parse(authorization, x_api_key, key, key_id))
        return ACCESS_BAD_KEY;
    if (cache_get(a, key, out))
        return ACCESS_OK;
    params[0] = key_id;
    params[1] = key;
    /* A read the replica will serve checks its key there first, so it does
     * not depend on the primary; a key the replica does not know yet (just
     * created) is looked up on the primary as well. */
    st = DB_UNAVAILABLE;
    if (replica_ok && a->fallback != NULL)
        st = store_call(a->fallback, STMT_AUTHENTICATE, 2, params, &doc, err, sizeof(err));
    if (st != DB_OK || doc == NULL) {
        json_decref(doc);
        doc = NULL;
        st = store_call(a->pool, STMT_AUTHENTICATE, 2, params, &doc, err, sizeof(err));
        if (st == DB_UNAVAILABLE && a->fallback != NULL && !replica_ok)
            st = store_call(a->fallback, STMT_AUTHENTICATE, 2, params, &doc, err, sizeof(err));
    }
    if (st == DB_UNAVAILABLE || st == DB_CANCELLED)
        return ACCESS_UNAVAILABLE;
    if (st != DB_OK) {
        log_msg(LOG_ERROR, "access", "key check: %s", err);
        return ACCESS_ERROR;
    }
    if (doc == NULL)
        return ACCESS_BAD_KEY;
    memset(out, 0, sizeof(*out));
    memcpy(out->key_id, key_id, sizeof(out->key_id));
    if (!role_parse(json_string_value(json_object_get(doc, "role")), &out->role)) {
        json_decref(doc);
        return ACCESS_BAD_KEY;
    }
    ns = json_string_value(json_object_get(doc, "namespace"));
    snprintf(out->namespace_, sizeof(out->namespace_), "%s", ns ? ns : "");
    json_decref(doc);
    cache_put(a, key, out);
    return ACCESS_OK;
}

void access_forget(struct access *a, const char *key_id)
{
    pthread_mutex_lock(&a->lock);
    for (int s = 0; s < CACHE_SETS; s++)
        for (int i = 0; i < CACHE_WAYS; i++)
            if (a->cache[s][i].expires != 0 && strcmp(a->cache[s][i].who.key_id, key_id) == 0)
                memset(&a->cache[s][i], 0, sizeof(a->cache[s][i]));
    pthread_mutex_unlock(&a->lock);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool access_rate_take(struct access *a, const char *key_id, int *retry_after)
{
    bool ok;
    if (a->rate == NULL)
        return true;
    pthread_mutex_lock(&a->lock);
    ok = ratelimit_take(a->rate, key_id, now_seconds(), retry_after);
    pthread_mutex_unlock(&a->lock);
    return ok;
}

bool access_bootstrap(PGconn *pg, const char *key)
{
    char text[API_KEY_LEN + 1], key_id[UUID_TEXT_LEN + 1];
    const char *params[2];
    PGresult *res;
    bool ok;
    if (!api_key_parse(NULL, key, text, key_id)) {
        log_msg(LOG_ERROR, "access", "CRM_BOOTSTRAP_ADMIN_KEY is not a key of the form "
                        "crm_<32 hex>_<43 base64url>");
        return false;
    }
    params[0] = key_id;
    params[1] = text;
    res = PQexecParams(pg, "SELECT crm.bootstrap_admin($1::uuid, $2)", 2, NULL, params, NULL,
                       NULL, 0);
    ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        log_msg(LOG_ERROR, "access", "bootstrap admin key: %s", PQerrorMessage(pg));
    else if (strcmp(PQgetvalue(res, 0, 0), "t") == 0)
        log_msg(LOG_INFO, "access", "installed the bootstrap admin key %s", key_id);
    PQclear(res);
    return ok;
}
