/*
 * webhook: the delivery workers. Each loops: (worker 0 only) fan feed
 * events out into deliveries, refresh the queue gauges every 2 s and purge
 * past the retention every minute; claim up to CLAIM_BATCH due deliveries
 * (crm.webhook_claim: leases, SKIP LOCKED, order per customer); send each,
 * signed, with the destination checked and pinned again at send time (a
 * host that now resolves to a private address is refused, and curl connects
 * to exactly the addresses checked); record the outcome (crm.webhook_result:
 * delivered, retried after a jittered backoff, or dead-lettered past the
 * horizon). An idle worker waits --webhook-poll-ms. On stop, the claimed
 * deliveries not yet attempted are given back at once; the attempt in
 * flight ends within --webhook-timeout and is recorded, or, if the
 * database is gone, its lease expires and another instance retries it.
 */
#include "webhook.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "webhook_policy.h"
#include "webhook_sign.h"

#define CLAIM_BATCH 8
#define FANOUT_PAGE 500

struct worker {
    struct webhooks *w;
    int index;
    pthread_t thread;
    bool started;
    PGconn *pg;
    CURL *curl;
    char owner[96];
    unsigned int seed;
};

struct webhooks {
    const struct config *cfg;
    int count;
    struct worker *workers;
    atomic_bool stop;
    pthread_mutex_t lock;
    pthread_cond_t wake;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleep up to ms, woken early by a stop. */
static void nap(struct webhooks *w, int ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->lock);
    if (!atomic_load(&w->stop))
        pthread_cond_timedwait(&w->wake, &w->lock, &until);
    pthread_mutex_unlock(&w->lock);
}

bool webhook_check_destination(const char *url, const char *allow, char *pin, size_t pincap,
                               char *err, size_t errlen)
{
    struct webhook_url u;
    struct addrinfo hints, *list = NULL;
    char port[8];
    size_t used = 0;
    int rc, n = 0;
    if (!webhook_url_parse(url, &u, err, errlen))
        return false;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", u.port);
    rc = getaddrinfo(u.host, port, &hints, &list);
    if (rc != 0) {
        snprintf(err, errlen, "the host '%.200s' does not resolve (%s)", u.host, gai_strerror(rc));
        return false;
    }
    if (pin != NULL) {
        int k = snprintf(pin, pincap, "%s:%d:", u.host, u.port);
        used = k > 0 && (size_t)k < pincap ? (size_t)k : pincap;
    }
    for (struct addrinfo *a = list; a != NULL; a = a->ai_next) {
        const unsigned char *bytes;
        char text[INET6_ADDRSTRLEN];
        if (a->ai_family == AF_INET)
            bytes = (const unsigned char *)&((struct sockaddr_in *)(void *)a->ai_addr)->sin_addr;
        else if (a->ai_family == AF_INET6)
            bytes = (const unsigned char *)&((struct sockaddr_in6 *)(void *)a->ai_addr)->sin6_addr;
        else
            continue;
        inet_ntop(a->ai_family, bytes, text, sizeof(text));
        if (!webhook_addr_public(a->ai_family, bytes) &&
            !webhook_allow_match(allow, u.host, a->ai_family, bytes)) {
            snprintf(err, errlen, "the host '%.200s' resolves to %s, a private, loopback, "
                     "link-local or reserved address (permit it with --webhook-allow-hosts)",
                     u.host, text);
            freeaddrinfo(list);
            return false;
        }
        if (pin != NULL && used < pincap) {
            int k = snprintf(pin + used, pincap - used, "%s%s%s%s", n > 0 ? "," : "",
                             a->ai_family == AF_INET6 ? "[" : "", text,
                             a->ai_family == AF_INET6 ? "]" : "");
            used = k > 0 && used + (size_t)k < pincap ? used + (size_t)k : pincap;
        }
        n++;
    }
    freeaddrinfo(list);
    if (n == 0) {
        snprintf(err, errlen, "the host '%.200s' has no IPv4 or IPv6 address", u.host);
        return false;
    }
    if (pin != NULL && used >= pincap) {
        snprintf(err, errlen, "the host '%.200s' has too many addresses", u.host);
        return false;
    }
    return true;
}

static bool ensure_connection(struct worker *k)
{
    if (k->pg != NULL && PQstatus(k->pg) == CONNECTION_OK)
        return true;
    PQfinish(k->pg);
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *values[] = {k->w->cfg->database_url, "5", "crm-server-webhooks", NULL};
    k->pg = PQconnectdbParams(keys, values, 1);
    if (PQstatus(k->pg) == CONNECTION_OK) {
        /* A worker never waits long on a lock (a table locked by a long
         * transaction would otherwise hold it, and a shutdown behind it, for
         * as long as that transaction lasts): it fails, naps and tries again. */
        PGresult *res = PQexec(k->pg, "SET lock_timeout = '2s'; SET statement_timeout = '30s'");
        PQclear(res);
        return true;
    }
    PQfinish(k->pg);
    k->pg = NULL;
    return false;
}

/* Run a parameterised statement; the result, or NULL (logged) on failure. */
static PGresult *run(struct worker *k, const char *sql, int n, const char *const *params,
                     const char *what)
{
    PGresult *res = PQexecParams(k->pg, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
        if (!atomic_load(&k->w->stop) || PQstatus(k->pg) == CONNECTION_OK)
            log_msg(LOG_ERROR, "webhook", "%s: %s", what, PQresultErrorMessage(res));
        PQclear(res);
        return NULL;
    }
    return res;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *ctx)
{
    (void)ptr;
    (void)ctx;
    return size * nmemb;
}

/* One attempt; true on a 2xx answer. status: the HTTP status (0 when none),
 * error: what went wrong. */
static bool send_one(struct worker *k, const char *url, const char *secret, const char *event_id,
                     const char *body, int *status, char *error, size_t errlen)
{
    const struct config *cfg = k->w->cfg;
    char pin[1024], sig[WEBHOOK_SIGNATURE_LEN + 1], h_id[160], h_ts[64], h_sig[96];
    long long ts = (long long)time(NULL);
    struct curl_slist *headers = NULL, *resolve = NULL;
    long code = 0;
    CURLcode rc;
    *status = 0;
    if (!webhook_check_destination(url, cfg->webhook_allow_hosts, pin, sizeof(pin), error,
                                   errlen))
        return false;
    if (!webhook_sign(secret, event_id, ts, body, strlen(body), sig)) {
        snprintf(error, errlen, "the webhook's secret cannot sign");
        return false;
    }
    snprintf(h_id, sizeof(h_id), "webhook-id: %s", event_id);
    snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %lld", ts);
    snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", sig);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, h_id);
    headers = curl_slist_append(headers, h_ts);
    headers = curl_slist_append(headers, h_sig);
    headers = curl_slist_append(headers, "Expect:");
    resolve = curl_slist_append(resolve, pin);
    curl_easy_reset(k->curl); /* keeps the handle's live connections */
    curl_easy_setopt(k->curl, CURLOPT_URL, url);
    curl_easy_setopt(k->curl, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(k->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(k->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(k->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(k->curl, CURLOPT_CONNECTTIMEOUT, (long)(cfg->webhook_timeout < 5 ? cfg->webhook_timeout : 5));
    curl_easy_setopt(k->curl, CURLOPT_TIMEOUT, (long)cfg->webhook_timeout);
    curl_easy_setopt(k->curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(k->curl, CURLOPT_USERAGENT, "crm-server-webhooks/1");
    curl_easy_setopt(k->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(k->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(k->curl, CURLOPT_WRITEFUNCTION, discard);
    rc = curl_easy_perform(k->curl);
    curl_slist_free_all(headers);
    curl_slist_free_all(resolve);
    if (rc != CURLE_OK) {
        snprintf(error, errlen, "%s", curl_easy_strerror(rc));
        return false;
    }
    curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &code);
    *status = (int)code;
    if (code >= 200 && code < 300)
        return true;
    snprintf(error, errlen, "the receiver answered %ld", code);
    return false;
}

static void record_result(struct worker *k, const char *delivery_id, bool ok, int status,
                          const char *error, int attempts, bool gone)
{
    const struct config *cfg = k->w->cfg;
    char st[16], delay[32], horizon[16];
    double unit = (double)rand_r(&k->seed) / ((double)RAND_MAX + 1.0);
    const char *params[7];
    PGresult *res;
    snprintf(st, sizeof(st), "%d", status);
    snprintf(delay, sizeof(delay), "%lld",
             webhook_backoff_ms(attempts, cfg->webhook_retry_base_ms, cfg->webhook_retry_max_ms,
                                unit));
    snprintf(horizon, sizeof(horizon), "%d", gone ? 0 : cfg->webhook_retry_horizon);
    params[0] = delivery_id;
    params[1] = k->owner;
    params[2] = ok ? "true" : "false";
    params[3] = status > 0 ? st : NULL;
    params[4] = ok ? NULL : error;
    params[5] = delay;
    params[6] = horizon;
    res = run(k, "SELECT crm.webhook_result($1::bigint, $2, $3::boolean, $4::int, $5, "
                 "$6::bigint, $7::int)", 7, params, "recording a delivery");
    if (res == NULL)
        return; /* the lease expires and the delivery is tried again */
    if (!PQgetisnull(res, 0, 0)) {
        const char *outcome = PQgetvalue(res, 0, 0);
        metrics_webhook_outcome(strcmp(outcome, "delivered") == 0 ? WEBHOOK_DELIVERED
                                : strcmp(outcome, "dead") == 0    ? WEBHOOK_DEAD
                                                                  : WEBHOOK_RETRY);
    }
    PQclear(res);
}

/* Give a claimed delivery back untried (stopping). */
static void release(struct worker *k, const char *delivery_id)
{
    const char *params[2] = {delivery_id, k->owner};
    PGresult *res = run(k, "UPDATE crm.webhook_deliveries SET lease_owner = NULL, "
                           "lease_until = NULL, attempts = attempts - 1 "
                           "WHERE delivery_id = $1::bigint AND lease_owner = $2",
                        2, params, "giving a delivery back");
    PQclear(res);
}

/* Claim and send a batch; how many were claimed. */
static int deliver_batch(struct worker *k)
{
    const struct config *cfg = k->w->cfg;
    char lease[16], limit[16];
    const char *params[3] = {k->owner, lease, limit};
    PGresult *res;
    int n;
    snprintf(lease, sizeof(lease), "%d", cfg->webhook_lease);
    snprintf(limit, sizeof(limit), "%d", CLAIM_BATCH);
    res = run(k, "SELECT delivery_id, url, secret, attempts, event_id, body "
                 "FROM crm.webhook_claim($1, $2::int, $3::int)", 3, params,
              "claiming deliveries");
    if (res == NULL)
        return 0;
    n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        const char *id = PQgetvalue(res, i, 0);
        char error[512] = "";
        int status = 0;
        bool ok;
        if (atomic_load(&k->w->stop)) {
            release(k, id);
            continue;
        }
        if (PQgetisnull(res, i, 5)) {
            record_result(k, id, false, 0, "the event is no longer retained", 1, true);
            continue;
        }
        ok = send_one(k, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 4),
                      PQgetvalue(res, i, 5), &status, error, sizeof(error));
        record_result(k, id, ok, status, error, atoi(PQgetvalue(res, i, 3)), false);
    }
    PQclear(res);
    return n;
}

/* Worker 0's share: fan-out, gauges, purge. */
static void housekeeping(struct worker *k, long long *next_gauge, long long *next_purge)
{
    const struct config *cfg = k->w->cfg;
    char page[16], retention[16];
    const char *params[2] = {page, retention};
    snprintf(page, sizeof(page), "%d", FANOUT_PAGE);
    snprintf(retention, sizeof(retention), "%d", cfg->event_retention);
    for (int round = 0; round < 10 && !atomic_load(&k->w->stop); round++) {
        PGresult *res = run(k, "SELECT crm.webhook_fanout($1::int, $2::int)", 2, params,
                            "fanning events out");
        int n = res != NULL ? atoi(PQgetvalue(res, 0, 0)) : 0;
        PQclear(res);
        if (n < FANOUT_PAGE)
            break;
    }
    if (now_ms() >= *next_gauge) {
        PGresult *res = run(k, "SELECT (q->>'pending')::bigint, (q->>'oldest_age_seconds')::float8 "
                               "FROM crm.webhook_queue() AS q", 0, NULL, "reading the queue");
        if (res != NULL) {
            metrics_webhook_queue(atoll(PQgetvalue(res, 0, 0)), atof(PQgetvalue(res, 0, 1)));
            PQclear(res);
        }
        *next_gauge = now_ms() + 2000;
    }
    if (now_ms() >= *next_purge) {
        PGresult *res = run(k, "SELECT crm.activation_purge($1::int)", 1, params + 1,
                            "purging past the retention");
        PQclear(res);
        *next_purge = now_ms() + 60000;
    }
}

static void *worker_main(void *arg)
{
    struct worker *k = arg;
    long long next_gauge = 0, next_purge = 0;
    while (!atomic_load(&k->w->stop)) {
        int claimed;
        if (!ensure_connection(k)) {
            nap(k->w, 1000);
            continue;
        }
        if (k->index == 0)
            housekeeping(k, &next_gauge, &next_purge);
        claimed = deliver_batch(k);
        if (claimed < CLAIM_BATCH)
            nap(k->w, k->w->cfg->webhook_poll_ms);
    }
    return NULL;
}

struct webhooks *webhooks_start(const struct config *cfg)
{
    struct webhooks *w = calloc(1, sizeof(*w));
    pthread_condattr_t attr;
    char host[64] = "";
    if (w == NULL)
        return NULL;
    w->cfg = cfg;
    atomic_init(&w->stop, false);
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (cfg->webhook_workers == 0)
        return w;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    gethostname(host, sizeof(host) - 1);
    w->workers = calloc((size_t)cfg->webhook_workers, sizeof(*w->workers));
    if (w->workers == NULL) {
        webhooks_stop(w);
        return NULL;
    }
    for (int i = 0; i < cfg->webhook_workers; i++) {
        struct worker *k = &w->workers[i];
        unsigned char rnd[4];
        FILE *f = fopen("/dev/urandom", "rb");
        if (f == NULL || fread(rnd, 1, sizeof(rnd), f) != sizeof(rnd))
            memcpy(rnd, &k, sizeof(rnd) < sizeof(k) ? sizeof(rnd) : sizeof(k));
        if (f != NULL)
            fclose(f);
        k->w = w;
        k->index = i;
        k->seed = (unsigned int)rnd[0] | (unsigned int)rnd[1] << 8 |
                  (unsigned int)rnd[2] << 16 | (unsigned int)rnd[3] << 24;
        snprintf(k->owner, sizeof(k->owner), "%s:%d:%d:%08x", host, (int)getpid(), i, k->seed);
        k->curl = curl_easy_init();
        if (k->curl == NULL || pthread_create(&k->thread, NULL, worker_main, k) != 0) {
            log_msg(LOG_ERROR, "webhook", "cannot start delivery worker %d", i);
            webhooks_stop(w);
            return NULL;
        }
        k->started = true;
        w->count = i + 1;
    }
    log_msg(LOG_INFO, "webhook", "%d delivery workers", w->count);
    return w;
}

void webhooks_signal_stop(struct webhooks *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    atomic_store(&w->stop, true);
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

void webhooks_stop(struct webhooks *w)
{
    if (w == NULL)
        return;
    webhooks_signal_stop(w);
    for (int i = 0; w->workers != NULL && i < w->cfg->webhook_workers; i++) {
        struct worker *k = &w->workers[i];
        if (k->started)
            pthread_join(k->thread, NULL);
        if (k->curl != NULL)
            curl_easy_cleanup(k->curl);
        PQfinish(k->pg);
    }
    if (w->workers != NULL)
        curl_global_cleanup();
    free(w->workers);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
}
