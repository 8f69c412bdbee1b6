/*
 * metrics: counters indexed by route and status code family (1xx..5xx),
 * and a latency histogram per route with Prometheus' default-like buckets
 * (one histogram over all routes mixed 1 ms profile reads with value runs
 * of minutes, and said nothing about either).
 */
#include "metrics.h"

#include "jsontext.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_CLASSES 6 /* index = status / 100, 0 unused */

static const double BUCKETS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25,   0.5,   1,      2.5,   5,    10};
#define BUCKET_COUNT (sizeof(BUCKETS) / sizeof(BUCKETS[0]))

static atomic_ullong requests[ROUTE_COUNT + 1][STATUS_CLASSES];
/* Per route (last row: unmatched requests); last bucket = +Inf. */
static atomic_ullong latency_buckets[ROUTE_COUNT + 1][BUCKET_COUNT + 1];
static atomic_ullong latency_sum_us[ROUTE_COUNT + 1];
static atomic_ullong latency_count[ROUTE_COUNT + 1];
static atomic_ullong ingested[3]; /* created, duplicate, failed */
static atomic_ullong batch_fallbacks;
static atomic_int long_requests; /* long-route requests queued or running */
static atomic_ullong long_refused; /* long-route requests refused: queue full */

static atomic_ullong webhook_outcomes[WEBHOOK_OUTCOME_COUNT];
static atomic_llong webhook_pending;
static atomic_llong webhook_oldest_ms;

static atomic_int value_running;
static atomic_ullong value_runs[3]; /* succeeded, failed, error */

void metrics_value_run_running(bool running)
{
    atomic_store(&value_running, running ? 1 : 0);
}

void metrics_value_run_done(const char *status)
{
    atomic_fetch_add(&value_runs[strcmp(status, "succeeded") == 0 ? 0
                                 : strcmp(status, "failed") == 0  ? 1
                                                                  : 2],
                     1);
}

void metrics_webhook_outcome(enum webhook_outcome outcome)
{
    if ((unsigned int)outcome < WEBHOOK_OUTCOME_COUNT)
        atomic_fetch_add(&webhook_outcomes[outcome], 1);
}

void metrics_webhook_queue(long long pending, double oldest_age_seconds)
{
    atomic_store(&webhook_pending, pending);
    atomic_store(&webhook_oldest_ms, (long long)(oldest_age_seconds * 1000.0));
}

void metrics_ingest(int created, int duplicates, int failed)
{
    atomic_fetch_add(&ingested[0], (unsigned long long)created);
    atomic_fetch_add(&ingested[1], (unsigned long long)duplicates);
    atomic_fetch_add(&ingested[2], (unsigned long long)failed);
}

void metrics_batch_fallback(void)
{
    atomic_fetch_add(&batch_fallbacks, 1);
}

void metrics_long_request(int delta)
{
    atomic_fetch_add(&long_requests, delta);
}

void metrics_long_refused(void)
{
    atomic_fetch_add(&long_refused, 1);
}

void metrics_record(int route, int status, double seconds)
{
    int r = route >= 0 && route < ROUTE_COUNT ? route : ROUTE_COUNT;
    int c = status / 100;
    size_t b = 0;
    if (c < 1 || c >= STATUS_CLASSES)
        c = 5;
    atomic_fetch_add(&requests[r][c], 1);
    while (b < BUCKET_COUNT && seconds > BUCKETS[b])
        b++;
    atomic_fetch_add(&latency_buckets[r][b], 1);
    atomic_fetch_add(&latency_sum_us[r], (unsigned long long)(seconds * 1e6));
    atomic_fetch_add(&latency_count[r], 1);
}

char *metrics_render(struct db_pool *pool, struct audit *audit)
{
    struct jsontext t;
    int in_use, open, waiting;
    long audit_queued, audit_written;
    jsontext_init(&t);

    jsontext_printf(&t, "# HELP crm_http_requests_total HTTP requests by route and status class.\n"
            "# TYPE crm_http_requests_total counter\n");
    for (int r = 0; r <= ROUTE_COUNT; r++)
        for (int c = 1; c < STATUS_CLASSES; c++) {
            unsigned long long n = atomic_load(&requests[r][c]);
            if (n > 0)
                jsontext_printf(&t, "crm_http_requests_total{route=\"%s\",status=\"%dxx\"} %llu\n",
                    r == ROUTE_COUNT ? "unmatched" : route_name((enum route)r), c, n);
        }
    jsontext_printf(&t, "# HELP crm_http_request_duration_seconds Time from request start to response, by route.\n"
            "# TYPE crm_http_request_duration_seconds histogram\n");
    for (int r = 0; r <= ROUTE_COUNT; r++) {
        const char *name = r == ROUTE_COUNT ? "unmatched" : route_name((enum route)r);
        unsigned long long cumulative = 0;
        if (atomic_load(&latency_count[r]) == 0)
            continue; /* a route's series appear once it has answered */
        for (size_t b = 0; b <= BUCKET_COUNT; b++) {
            char le[16];
            cumulative += atomic_load(&latency_buckets[r][b]);
            if (b < BUCKET_COUNT)
                snprintf(le, sizeof(le), "%g", BUCKETS[b]);
            else
                snprintf(le, sizeof(le), "+Inf");
            jsontext_printf(&t, "crm_http_request_duration_seconds_bucket{route=\"%s\",le=\"%s\"} %llu\n",
                name, le, cumulative);
        }
        jsontext_printf(&t, "crm_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", name,
            (double)atomic_load(&latency_sum_us[r]) / 1e6);
        jsontext_printf(&t, "crm_http_request_duration_seconds_count{route=\"%s\"} %llu\n", name,
            atomic_load(&latency_count[r]));
    }
    db_pool_stats(pool, &in_use, &open, &waiting);
    jsontext_printf(&t, "# HELP crm_db_pool_connections Database connections by state.\n"
            "# TYPE crm_db_pool_connections gauge\n"
            "crm_db_pool_connections{state=\"in_use\"} %d\n"
            "crm_db_pool_connections{state=\"open\"} %d\n"
            "# HELP crm_db_pool_waiting Requests waiting for a database connection.\n"
            "# TYPE crm_db_pool_waiting gauge\n"
            "crm_db_pool_waiting %d\n",
        in_use, open, waiting);
    jsontext_printf(&t, "# HELP crm_http_long_requests Long-route requests queued or running on the long-route threads.\n"
            "# TYPE crm_http_long_requests gauge\n"
            "crm_http_long_requests %d\n",
        atomic_load(&long_requests));
    jsontext_printf(&t, "# HELP crm_http_long_refused_total Long-route requests answered 503 because "
            "CRM_HTTP_LONG_QUEUE of them were already waiting.\n"
            "# TYPE crm_http_long_refused_total counter\n"
            "crm_http_long_refused_total %llu\n",
        atomic_load(&long_refused));
    jsontext_printf(&t, "# HELP crm_ingest_interactions_total Interactions received (single and batch) by result.\n"
            "# TYPE crm_ingest_interactions_total counter\n"
            "crm_ingest_interactions_total{result=\"created\"} %llu\n"
            "crm_ingest_interactions_total{result=\"duplicate\"} %llu\n"
            "crm_ingest_interactions_total{result=\"failed\"} %llu\n"
            "# HELP crm_ingest_batch_fallbacks_total Batches stored item by item because the set-based statement failed.\n"
            "# TYPE crm_ingest_batch_fallbacks_total counter\n"
            "crm_ingest_batch_fallbacks_total %llu\n",
        atomic_load(&ingested[0]), atomic_load(&ingested[1]), atomic_load(&ingested[2]),
        atomic_load(&batch_fallbacks));
    audit_stats(audit, &audit_queued, &audit_written);
    jsontext_printf(&t, "# HELP crm_audit_rows_queued Read-audit rows waiting to be written.\n"
            "# TYPE crm_audit_rows_queued gauge\n"
            "crm_audit_rows_queued %ld\n"
            "# HELP crm_audit_rows_written_total Read-audit rows written.\n"
            "# TYPE crm_audit_rows_written_total counter\n"
            "crm_audit_rows_written_total %ld\n",
        audit_queued, audit_written);
    jsontext_printf(&t, "# HELP crm_webhook_deliveries_total Webhook delivery attempts by outcome (retry: "
            "failed, to be tried again; dead: failed past the retry horizon).\n"
            "# TYPE crm_webhook_deliveries_total counter\n"
            "crm_webhook_deliveries_total{outcome=\"delivered\"} %llu\n"
            "crm_webhook_deliveries_total{outcome=\"retry\"} %llu\n"
            "crm_webhook_deliveries_total{outcome=\"dead\"} %llu\n"
            "# HELP crm_webhook_queue_depth Webhook deliveries pending (all instances; read "
            "every 2 s by the instance fanning out, 0 elsewhere).\n"
            "# TYPE crm_webhook_queue_depth gauge\n"
            "crm_webhook_queue_depth %lld\n"
            "# HELP crm_webhook_oldest_undelivered_seconds Age of the oldest event with a "
            "pending delivery.\n"
            "# TYPE crm_webhook_oldest_undelivered_seconds gauge\n"
            "crm_webhook_oldest_undelivered_seconds %.3f\n",
        atomic_load(&webhook_outcomes[WEBHOOK_DELIVERED]),
        atomic_load(&webhook_outcomes[WEBHOOK_RETRY]), atomic_load(&webhook_outcomes[WEBHOOK_DEAD]),
        atomic_load(&webhook_pending), (double)atomic_load(&webhook_oldest_ms) / 1000.0);
    jsontext_printf(&t, "# HELP crm_value_run_in_progress A value run of this instance is under way.\n"
            "# TYPE crm_value_run_in_progress gauge\n"
            "crm_value_run_in_progress %d\n"
            "# HELP crm_value_runs_total Value runs of this instance by outcome (failed: the fit "
            "did not converge; error: the run did not complete).\n"
            "# TYPE crm_value_runs_total counter\n"
            "crm_value_runs_total{status=\"succeeded\"} %llu\n"
            "crm_value_runs_total{status=\"failed\"} %llu\n"
            "crm_value_runs_total{status=\"error\"} %llu\n",
        atomic_load(&value_running), atomic_load(&value_runs[0]), atomic_load(&value_runs[1]),
        atomic_load(&value_runs[2]));
    return jsontext_take(&t);
}
