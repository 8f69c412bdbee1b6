/*
 * audit: a mutex-protected array of pending rows and one writer thread (a
 * ticker). The writer wakes every flush_ms (or when the batch is large), takes the
 * whole array, turns it into one JSON array and calls crm.audit_reads; on
 * failure the rows go back in front of the queue for the next round.
 */
#include "audit.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "store.h"
#include "textutil.h"
#include "ticker.h"

#define AUDIT_BATCH_WAKE 2000 /* wake the writer early at this many rows */

struct audit_row {
    char at[64];
    char key_id[UUID_TEXT_LEN + 1];
    enum role role;
    char action[32];
    char customer_id[UUID_TEXT_LEN + 1];
};

struct audit {
    struct db_pool *pool;
    int flush_ms;
    pthread_mutex_t lock;
    struct ticker *writer; /* NULL: every row is written synchronously */
    struct audit_row *rows;
    long count, capacity;
    long written;
};

static void now_rfc3339(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
}

/* Write rows[0..n) in one statement. The JSON array is printed directly:
 * every field is a timestamp, a UUID or a fixed name, nothing to escape. */
static bool write_rows(struct db_pool *pool, const struct audit_row *rows, long n)
{
    size_t cap = (size_t)n * 384 + 3, len = 0; /* a row prints at most ~300 bytes */
    char *text = malloc(cap), err[256];
    json_t *out = NULL;
    enum db_status st;
    text[len++] = '[';
    for (long i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len,
                                "%s{\"at\":\"%s\",\"key_id\":\"%s\",\"role\":\"%s\","
                                "\"action\":\"%s\",\"customer_id\":\"%s\"}",
                                i > 0 ? "," : "", rows[i].at, rows[i].key_id,
                                role_name(rows[i].role), rows[i].action, rows[i].customer_id);
    text[len++] = ']';
    text[len] = '\0';
    st = store_call(pool, STMT_AUDIT_READS, 1, (const char *const *)&text, &out, err, sizeof(err));
    free(text);
    json_decref(out);
    if (st != DB_OK)
        log_msg(LOG_ERROR, "audit", "writing %ld read-audit rows failed (kept, will retry): %s",
                n, err);
    return st == DB_OK;
}

/* Take the queue, write it, and put it back in front on failure. */
static bool flush_once(struct audit *a)
{
    struct audit_row *batch;
    long n;
    bool ok;
    pthread_mutex_lock(&a->lock);
    batch = a->rows;
    n = a->count;
    a->rows = NULL;
    a->count = a->capacity = 0;
    pthread_mutex_unlock(&a->lock);
    if (n == 0) {
        free(batch);
        return true;
    }
    ok = write_rows(a->pool, batch, n);
    pthread_mutex_lock(&a->lock);
    if (ok) {
        a->written += n;
    } else {
        /* Newer rows arrived meanwhile: keep the old ones first. */
        long total = n + a->count;
        struct audit_row *merged = malloc((size_t)total * sizeof(*merged));
        memcpy(merged, batch, (size_t)n * sizeof(*merged));
        if (a->count > 0)
            memcpy(merged + n, a->rows, (size_t)a->count * sizeof(*merged));
        free(a->rows);
        a->rows = merged;
        a->count = a->capacity = total;
    }
    pthread_mutex_unlock(&a->lock);
    free(batch);
    return ok;
}

static void write_pending(void *arg)
{
    flush_once(arg);
}

struct audit *audit_new(struct db_pool *pool, int flush_ms)
{
    struct audit *a = calloc(1, sizeof(*a));
    a->pool = pool;
    pthread_mutex_init(&a->lock, NULL);
    if (flush_ms > 0 && (a->writer = ticker_start(flush_ms, write_pending, a)) == NULL)
        log_msg(LOG_WARNING, "audit", "no writer thread; writing each row synchronously");
    a->flush_ms = a->writer != NULL ? flush_ms : 0;
    return a;
}

void audit_free(struct audit *a)
{
    if (a == NULL)
        return;
    if (a->writer != NULL) {
        ticker_stop(a->writer);
        for (int attempt = 0; attempt < 3 && !flush_once(a); attempt++)
            db_sleep_ms(1000);
        if (a->count > 0)
            log_msg(LOG_ERROR, "audit", "%ld read-audit rows could not be written at shutdown",
                    a->count);
    }
    pthread_mutex_destroy(&a->lock);
    free(a->rows);
    free(a);
}

bool audit_add(struct audit *a, const struct principal *who, const char *action,
               const char *customer_id)
{
    struct audit_row row;
    bool wake;
    memset(&row, 0, sizeof(row));
    now_rfc3339(row.at, sizeof(row.at));
    snprintf(row.key_id, sizeof(row.key_id), "%s", who->key_id);
    row.role = who->role;
    snprintf(row.action, sizeof(row.action), "%s", action);
    snprintf(row.customer_id, sizeof(row.customer_id), "%s", customer_id);
    if (a->flush_ms == 0) {
        bool ok = write_rows(a->pool, &row, 1);
        if (ok) {
            pthread_mutex_lock(&a->lock);
            a->written++;
            pthread_mutex_unlock(&a->lock);
        }
        return ok;
    }
    pthread_mutex_lock(&a->lock);
    if (a->count >= AUDIT_QUEUE_MAX) {
        pthread_mutex_unlock(&a->lock);
        return false;
    }
    if (a->count == a->capacity) {
        a->capacity = a->capacity ? a->capacity * 2 : 256;
        a->rows = realloc(a->rows, (size_t)a->capacity * sizeof(*a->rows));
    }
    a->rows[a->count++] = row;
    wake = a->count == AUDIT_BATCH_WAKE;
    pthread_mutex_unlock(&a->lock);
    if (wake)
        ticker_wake(a->writer);
    return true;
}

bool audit_flush(struct audit *a)
{
    return a->flush_ms == 0 || flush_once(a);
}

void audit_stats(struct audit *a, long *queued, long *written)
{
    pthread_mutex_lock(&a->lock);
    *queued = a->count;
    *written = a->written;
    pthread_mutex_unlock(&a->lock);
}
