/*
 * webhook: the delivery workers. Each loops: (worker 0 only) every 100 ms
 * fan feed events out into deliveries and wake the others when it made
 * some, refresh the queue gauges every 2 s and purge past the retention
 * every minute; keep up to WINDOW attempts in flight (curl multi, one
 * connection cache per worker, so connections to a receiver are kept
 * alive), refilling free slots with due deliveries (crm.webhook_claim:
 * leases, SKIP LOCKED, order per customer); each is signed and its
 * destination checked and pinned again at send time (a host that now
 * resolves to a private address is refused, and curl connects to exactly
 * the addresses checked); outcomes are recorded together in one statement
 * (crm.webhook_results: delivered, retried after a jittered backoff, or
 * dead-lettered past the horizon). An idle worker waits --webhook-poll-ms
 * or until a fan-out. On stop, no new claim; the attempts in flight end
 * within --webhook-timeout and are recorded, or, if the database is gone,
 * their leases expire and another instance retries them.
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

#include <jansson.h>

#include "log.h"
#include "metrics.h"
#include "webhook_policy.h"
#include "webhook_sign.h"

#define WINDOW 32          /* attempts in flight per worker */
#define FANOUT_PAGE 500
#define FANOUT_EVERY_MS 100 /* worker 0 moves new events into deliveries this often */
#define FLUSH_AFTER_MS 20   /* an outcome waits at most this long to be recorded */

/* One attempt in flight: its curl handle (kept, so it is reset, not
 * remade) and what must outlive the send. */
struct transfer {
    CURL *easy;
    bool busy;
    struct curl_slist *headers, *resolve;
    char *delivery_id, *body;
    int attempts;
    char error[CURL_ERROR_SIZE];
};

/* A finished attempt waiting to be recorded. */
struct outcome {
    char *delivery_id;
    bool ok, gone;
    int status, attempts;
    char error[512];
};

struct worker {
    struct webhooks *w;
    int index;
    pthread_t thread;
    bool started;
    PGconn *pg;
    CURLM *multi;
    struct transfer slots[WINDOW];
    int in_flight;
    struct outcome done[WINDOW]; /* in_flight + ndone <= WINDOW */
    int ndone;
    long long first_done_ms;
    char owner[96];
    unsigned int seed;
};

struct webhooks {
    const struct config *cfg;
    int count;
    struct worker *workers;
    atomic_bool stop;
    atomic_long fanned; /* bumped by a fan-out that made deliveries */
    pthread_mutex_t lock;
    pthread_cond_t wake;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

/* The statements of the workers (their own connections, not the pool's). */
enum wh_stmt { WH_CLAIM, WH_RESULTS, WH_FANOUT, WH_QUEUE, WH_PURGE, WH_STMT_COUNT };

static const struct {
    const char *sql, *what;
} WH_STATEMENTS[WH_STMT_COUNT] = {
    [WH_CLAIM] = {"SELECT delivery_id, url, secret, attempts, event_id, body "
                  "FROM crm.webhook_claim($1, $2::int, $3::int)",
                  "claiming deliveries"},
    [WH_RESULTS] = {"SELECT delivery_id, status FROM crm.webhook_results($1, $2::jsonb)",
                    "recording deliveries"},
    [WH_FANOUT] = {"SELECT crm.webhook_fanout($1::int, $2::int)", "fanning events out"},
    [WH_QUEUE] = {"SELECT (q->>'pending')::bigint, (q->>'oldest_age_seconds')::float8 "
                  "FROM crm.webhook_queue() AS q",
                  "reading the queue"},
    [WH_PURGE] = {"SELECT crm.activation_purge($1::int)", "purging past the retention"},
};

/* Run one of the statements; the result, or NULL (logged) on failure. */
static PGresult *run(struct worker *k, enum wh_stmt stmt, int n, const char *const *params)
{
    PGresult *res = PQexecParams(k->pg, WH_STATEMENTS[stmt].sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
        if (!atomic_load(&k->w->stop) || PQstatus(k->pg) == CONNECTION_OK)
            log_msg(LOG_ERROR, "webhook", "%s: %s", WH_STATEMENTS[stmt].what,
                    PQresultErrorMessage(res));
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

/* An attempt's outcome, kept until it is recorded with the others. */
static void add_outcome(struct worker *k, char *delivery_id, bool ok, int status,
                        const char *error, int attempts, bool gone)
{
    struct outcome *o = &k->done[k->ndone++];
    o->delivery_id = delivery_id;
    o->ok = ok;
    o->status = status;
    o->attempts = attempts;
    o->gone = gone;
    snprintf(o->error, sizeof(o->error), "%s", ok ? "" : error);
    if (k->ndone == 1)
        k->first_done_ms = now_ms();
}

/* The destination check of the last URL of this claim (a batch names few
 * URLs; one resolution each, not one per delivery). */
struct destination {
    const char *url; /* NULL: none checked yet */
    bool ok;
    char pin[1024], error[512];
};

/* Start one attempt in a free slot; on a refusal before sending (the
 * destination, the secret), its outcome is recorded instead. Takes
 * delivery_id and body. */
static void start_attempt(struct worker *k, struct destination *dest, char *delivery_id,
                          const char *url, const char *secret, int attempts,
                          const char *event_id, char *body)
{
    const struct config *cfg = k->w->cfg;
    char sig[WEBHOOK_SIGNATURE_LEN + 1], h_id[160], h_ts[64], h_sig[96];
    long long ts = (long long)time(NULL);
    struct transfer *t = NULL;
    if (dest->url == NULL || strcmp(dest->url, url) != 0) {
        dest->url = url;
        dest->ok = webhook_check_destination(url, cfg->webhook_allow_hosts, dest->pin,
                                             sizeof(dest->pin), dest->error,
                                             sizeof(dest->error));
    }
    if (!dest->ok) {
        add_outcome(k, delivery_id, false, 0, dest->error, attempts, false);
        free(body);
        return;
    }
    if (!webhook_sign(secret, event_id, ts, body, strlen(body), sig)) {
        add_outcome(k, delivery_id, false, 0, "the webhook's secret cannot sign", attempts,
                    false);
        free(body);
        return;
    }
    for (int i = 0; i < WINDOW && t == NULL; i++)
        if (!k->slots[i].busy)
            t = &k->slots[i];
    if (t == NULL) { /* a claim never asks for more than the free slots */
        add_outcome(k, delivery_id, false, 0, "no free slot", attempts, false);
        free(body);
        return;
    }
    snprintf(h_id, sizeof(h_id), "webhook-id: %s", event_id);
    snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %lld", ts);
    snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", sig);
    t->headers = curl_slist_append(NULL, "Content-Type: application/json");
    t->headers = curl_slist_append(t->headers, h_id);
    t->headers = curl_slist_append(t->headers, h_ts);
    t->headers = curl_slist_append(t->headers, h_sig);
    t->headers = curl_slist_append(t->headers, "Expect:");
    t->resolve = curl_slist_append(NULL, dest->pin);
    t->delivery_id = delivery_id;
    t->body = body;
    t->attempts = attempts;
    t->error[0] = '\0';
    curl_easy_reset(t->easy);
    curl_easy_setopt(t->easy, CURLOPT_URL, url);
    curl_easy_setopt(t->easy, CURLOPT_RESOLVE, t->resolve);
    curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(t->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT,
                     (long)(cfg->webhook_timeout < 5 ? cfg->webhook_timeout : 5));
    curl_easy_setopt(t->easy, CURLOPT_TIMEOUT, (long)cfg->webhook_timeout);
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(t->easy, CURLOPT_USERAGENT, "crm-server-webhooks/1");
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, t->body);
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(t->body));
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    if (curl_multi_add_handle(k->multi, t->easy) != CURLM_OK) {
        add_outcome(k, delivery_id, false, 0, "cannot start the request", attempts, false);
        curl_slist_free_all(t->headers);
        curl_slist_free_all(t->resolve);
        free(body);
        return;
    }
    t->busy = true;
    k->in_flight++;
}

/* A finished attempt: its outcome, the slot freed. */
static void finish_attempt(struct worker *k, struct transfer *t, CURLcode rc)
{
    long code = 0;
    char error[512];
    curl_multi_remove_handle(k->multi, t->easy);
    if (rc == CURLE_OK)
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    if (rc != CURLE_OK)
        snprintf(error, sizeof(error), "%s", t->error[0] ? t->error : curl_easy_strerror(rc));
    else
        snprintf(error, sizeof(error), "the receiver answered %ld", code);
    add_outcome(k, t->delivery_id, rc == CURLE_OK && code >= 200 && code < 300, (int)code,
                error, t->attempts, false);
    curl_slist_free_all(t->headers);
    curl_slist_free_all(t->resolve);
    free(t->body);
    t->delivery_id = t->body = NULL;
    t->busy = false;
    k->in_flight--;
}

/* Move the attempts in flight on, waiting up to ms for one of them. */
static void drive(struct worker *k, int ms)
{
    CURLMsg *msg;
    int running, left;
    curl_multi_perform(k->multi, &running);
    if (running > 0)
        curl_multi_poll(k->multi, NULL, 0, ms, NULL);
    curl_multi_perform(k->multi, &running);
    while ((msg = curl_multi_info_read(k->multi, &left)) != NULL) {
        struct transfer *t = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        finish_attempt(k, t, msg->data.result);
    }
}

/* Record every outcome kept, in one statement: delivered, retried after a
 * jittered backoff, or dead-lettered past the horizon. If it fails, the
 * leases expire and the deliveries are tried again. */
static void flush_outcomes(struct worker *k)
{
    const struct config *cfg = k->w->cfg;
    json_t *items = json_array();
    char *text;
    PGresult *res = NULL;
    for (int i = 0; i < k->ndone; i++) {
        struct outcome *o = &k->done[i];
        double unit = (double)rand_r(&k->seed) / ((double)RAND_MAX + 1.0);
        json_array_append_new(items, json_pack(
            "{s:s, s:b, s:o, s:o, s:I, s:i}", "id", o->delivery_id, "ok", o->ok, "status",
            o->status > 0 ? json_integer(o->status) : json_null(), "error",
            o->ok ? json_null() : json_string(o->error), "delay_ms",
            (json_int_t)webhook_backoff_ms(o->attempts, cfg->webhook_retry_base_ms,
                                           cfg->webhook_retry_max_ms, unit),
            "horizon_s", o->gone ? 0 : cfg->webhook_retry_horizon));
    }
    text = json_dumps(items, JSON_COMPACT);
    json_decref(items);
    if (text != NULL && ensure_connection(k)) {
        const char *params[2] = {k->owner, text};
        res = run(k, WH_RESULTS, 2, params);
    }
    for (int i = 0; res != NULL && i < PQntuples(res); i++) {
        const char *outcome = PQgetvalue(res, i, 1);
        metrics_webhook_outcome(strcmp(outcome, "delivered") == 0 ? WEBHOOK_DELIVERED
                                : strcmp(outcome, "dead") == 0    ? WEBHOOK_DEAD
                                                                  : WEBHOOK_RETRY);
    }
    PQclear(res);
    free(text);
    for (int i = 0; i < k->ndone; i++)
        free(k->done[i].delivery_id);
    k->ndone = 0;
}

/* Claim up to room due deliveries and start them; how many were claimed. */
static int claim(struct worker *k, int room)
{
    const struct config *cfg = k->w->cfg;
    char lease[16], limit[16];
    const char *params[3] = {k->owner, lease, limit};
    struct destination dest = {.url = NULL};
    PGresult *res;
    int n;
    snprintf(lease, sizeof(lease), "%d", cfg->webhook_lease);
    snprintf(limit, sizeof(limit), "%d", room);
    res = run(k, WH_CLAIM, 3, params);
    if (res == NULL)
        return 0;
    n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        char *id = strdup(PQgetvalue(res, i, 0));
        int attempts = atoi(PQgetvalue(res, i, 3));
        if (PQgetisnull(res, i, 5)) {
            add_outcome(k, id, false, 0, "the event is no longer retained", attempts, true);
            continue;
        }
        start_attempt(k, &dest, id, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), attempts,
                      PQgetvalue(res, i, 4), strdup(PQgetvalue(res, i, 5)));
    }
    PQclear(res);
    return n;
}

/* Worker 0's share: fan-out (waking the other workers when it made
 * deliveries), gauges, purge. */
static void housekeeping(struct worker *k, long long *next_gauge, long long *next_purge)
{
    const struct config *cfg = k->w->cfg;
    char page[16], retention[16];
    const char *params[2] = {page, retention};
    bool made = false;
    snprintf(page, sizeof(page), "%d", FANOUT_PAGE);
    snprintf(retention, sizeof(retention), "%d", cfg->event_retention);
    for (int round = 0; round < 10 && !atomic_load(&k->w->stop); round++) {
        PGresult *res = run(k, WH_FANOUT, 2, params);
        int n = res != NULL ? atoi(PQgetvalue(res, 0, 0)) : 0;
        PQclear(res);
        made = made || n > 0;
        if (n < FANOUT_PAGE)
            break;
    }
    if (made) {
        pthread_mutex_lock(&k->w->lock);
        atomic_fetch_add(&k->w->fanned, 1);
        pthread_cond_broadcast(&k->w->wake);
        pthread_mutex_unlock(&k->w->lock);
    }
    if (now_ms() >= *next_gauge) {
        PGresult *res = run(k, WH_QUEUE, 0, NULL);
        if (res != NULL) {
            metrics_webhook_queue(atoll(PQgetvalue(res, 0, 0)), atof(PQgetvalue(res, 0, 1)));
            PQclear(res);
        }
        *next_gauge = now_ms() + 2000;
    }
    if (now_ms() >= *next_purge) {
        PGresult *res = run(k, WH_PURGE, 1, params + 1);
        PQclear(res);
        *next_purge = now_ms() + 60000;
    }
}

/* Sleep up to ms, woken early by a stop or by a fan-out after seen. */
static void nap_for_work(struct webhooks *w, long long ms, long seen)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->lock);
    if (!atomic_load(&w->stop) && atomic_load(&w->fanned) == seen)
        pthread_cond_timedwait(&w->wake, &w->lock, &until);
    pthread_mutex_unlock(&w->lock);
}

/* A sliding window of up to WINDOW attempts in flight (curl multi, one
 * connection cache per worker): a free slot is refilled by the next claim,
 * a slow receiver holds one slot, not the worker. Outcomes are recorded
 * together, once none is in flight, half the window has finished, or the
 * oldest waited FLUSH_AFTER_MS. On stop: no new claim; the attempts in
 * flight end within --webhook-timeout and are recorded. */
static void *worker_main(void *arg)
{
    struct worker *k = arg;
    struct webhooks *w = k->w;
    long long next_gauge = 0, next_purge = 0, next_fanout = 0, next_claim = 0;
    long seen = atomic_load(&w->fanned);
    for (;;) {
        bool stopping = atomic_load(&w->stop);
        long long now = now_ms();
        long fanned = atomic_load(&w->fanned);
        if (stopping && k->in_flight == 0) {
            if (k->ndone > 0)
                flush_outcomes(k);
            break;
        }
        if (fanned != seen) {
            seen = fanned;
            next_claim = 0;
        }
        if (!stopping && k->index == 0 && now >= next_fanout) {
            if (ensure_connection(k))
                housekeeping(k, &next_gauge, &next_purge);
            next_fanout = now + FANOUT_EVERY_MS;
        }
        if (!stopping && now >= next_claim && k->in_flight + k->ndone < WINDOW) {
            int room = WINDOW - k->in_flight - k->ndone;
            if (!ensure_connection(k))
                next_claim = now + 1000;
            else if (claim(k, room) < room)
                next_claim = now + w->cfg->webhook_poll_ms;
        }
        if (k->in_flight > 0)
            drive(k, 20);
        if (k->ndone > 0 && (k->in_flight == 0 || k->ndone >= WINDOW / 2 ||
                             now_ms() - k->first_done_ms >= FLUSH_AFTER_MS))
            flush_outcomes(k);
        if (k->in_flight == 0 && k->ndone == 0 && !atomic_load(&w->stop)) {
            long long wake = next_claim;
            if (k->index == 0 && next_fanout < wake)
                wake = next_fanout;
            if (wake > now_ms())
                nap_for_work(w, wake - now_ms(), seen);
        }
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
    atomic_init(&w->fanned, 0);
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
        k->multi = curl_multi_init();
        bool handles = k->multi != NULL;
        for (int j = 0; handles && j < WINDOW; j++)
            handles = (k->slots[j].easy = curl_easy_init()) != NULL;
        if (handles) {
            /* one connection per attempt in flight at most, kept alive */
            curl_multi_setopt(k->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)WINDOW);
            curl_multi_setopt(k->multi, CURLMOPT_MAXCONNECTS, (long)WINDOW);
        }
        if (!handles || pthread_create(&k->thread, NULL, worker_main, k) != 0) {
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
        for (int j = 0; j < WINDOW; j++)
            if (k->slots[j].easy != NULL)
                curl_easy_cleanup(k->slots[j].easy);
        if (k->multi != NULL)
            curl_multi_cleanup(k->multi);
        PQfinish(k->pg);
    }
    if (w->workers != NULL)
        curl_global_cleanup();
    free(w->workers);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
}
