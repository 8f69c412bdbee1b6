/*
 * config: defaults < environment < flags. Every setting has one env name and
 * one flag; values are range-checked so a typo fails at start-up, not later.
 */
#include "config.h"
#include "customize.h"
#include "webhook_policy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct setting {
    const char *flag;
    const char *env;
    char kind; /* 's' string, 'i' int, 'z' size */
    size_t offset;
    size_t size;
    long min, max;
};

static const struct setting SETTINGS[] = {
    {"--listen", "CRM_LISTEN", 's', offsetof(struct config, listen), 64, 0, 0},
    {"--port", "CRM_PORT", 'i', offsetof(struct config, port), 0, 1, 65535},
    {"--db", "CRM_DATABASE_URL", 's', offsetof(struct config, database_url), 1024, 0, 0},
    {"--pool-size", "CRM_POOL_SIZE", 'i', offsetof(struct config, pool_size), 0, 1, 256},
    {"--read-pool-size", "CRM_READ_POOL_SIZE", 'i', offsetof(struct config, read_pool_size), 0, 0,
     256},
    {"--http-threads", "CRM_HTTP_THREADS", 'i', offsetof(struct config, http_threads), 0, 0, 1024},
    {"--http-long-threads", "CRM_HTTP_LONG_THREADS", 'i',
     offsetof(struct config, http_long_threads), 0, 1, 256},
    {"--http-long-queue", "CRM_HTTP_LONG_QUEUE", 'i', offsetof(struct config, http_long_queue), 0,
     1, 100000},
    {"--body-limit", "CRM_BODY_LIMIT", 'z', offsetof(struct config, body_limit), 0, 1024,
     64L * 1024 * 1024},
    {"--max-connections", "CRM_MAX_CONNECTIONS", 'i', offsetof(struct config, max_connections), 0,
     1, 100000},
    {"--max-connections-per-ip", "CRM_MAX_CONNECTIONS_PER_IP", 'i',
     offsetof(struct config, max_connections_per_ip), 0, 0, 100000},
    {"--connection-timeout", "CRM_CONNECTION_TIMEOUT", 'i',
     offsetof(struct config, connection_timeout), 0, 1, 3600},
    {"--header-timeout", "CRM_HEADER_TIMEOUT", 'i', offsetof(struct config, header_timeout), 0, 1,
     3600},
    {"--db-wait", "CRM_DB_WAIT", 'i', offsetof(struct config, db_wait), 0, 0, 3600},
    {"--drain-timeout", "CRM_DRAIN_TIMEOUT", 'i', offsetof(struct config, drain_timeout), 0, 0, 3600},
    {"--as-of", "CRM_AS_OF", 's', offsetof(struct config, as_of), 64, 0, 0},
    {"--live", "CRM_LIVE", 'i', offsetof(struct config, live), 0, 0, 1},
    {"--value-schedule", "CRM_VALUE_SCHEDULE", 'i', offsetof(struct config, value_schedule), 0,
     0, 366 * 86400},
    {"--rate-limit", "CRM_RATE_LIMIT", 'i', offsetof(struct config, rate_limit), 0, 0, 1000000},
    {"--tls-cert", "CRM_TLS_CERT", 's', offsetof(struct config, tls_cert), 512, 0, 0},
    {"--tls-key", "CRM_TLS_KEY", 's', offsetof(struct config, tls_key), 512, 0, 0},
    {"--access-log", "CRM_ACCESS_LOG", 'i', offsetof(struct config, access_log), 0, 0, 1},
    {"--json-depth", "CRM_JSON_DEPTH", 'i', offsetof(struct config, json_depth), 0, 2, 1000},
    {"--db-replica", "CRM_DATABASE_REPLICA_URL", 's', offsetof(struct config, replica_url), 1024,
     0, 0},
    {"--replica-wait-ms", "CRM_REPLICA_WAIT_MS", 'i', offsetof(struct config, replica_wait_ms), 0,
     0, 10000},
    {"--db-prepared", "CRM_DB_PREPARED", 'i', offsetof(struct config, db_prepared), 0, 0, 1},
    {"--audit-flush-ms", "CRM_AUDIT_FLUSH_MS", 'i', offsetof(struct config, audit_flush_ms), 0, 0,
     10000},
    {"--event-retention", "CRM_EVENT_RETENTION", 'i', offsetof(struct config, event_retention), 0,
     1, 366 * 86400},
    {"--webhook-workers", "CRM_WEBHOOK_WORKERS", 'i', offsetof(struct config, webhook_workers), 0,
     0, 64},
    {"--webhook-allow-hosts", "CRM_WEBHOOK_ALLOW_HOSTS", 's',
     offsetof(struct config, webhook_allow_hosts), 1024, 0, 0},
    {"--webhook-timeout", "CRM_WEBHOOK_TIMEOUT", 'i', offsetof(struct config, webhook_timeout), 0,
     1, 300},
    {"--webhook-retry-base-ms", "CRM_WEBHOOK_RETRY_BASE_MS", 'i',
     offsetof(struct config, webhook_retry_base_ms), 0, 1, 86400000},
    {"--webhook-retry-max-ms", "CRM_WEBHOOK_RETRY_MAX_MS", 'i',
     offsetof(struct config, webhook_retry_max_ms), 0, 1, 86400000},
    {"--webhook-retry-horizon", "CRM_WEBHOOK_RETRY_HORIZON", 'i',
     offsetof(struct config, webhook_retry_horizon), 0, 1, 30 * 86400},
    {"--webhook-poll-ms", "CRM_WEBHOOK_POLL_MS", 'i', offsetof(struct config, webhook_poll_ms), 0,
     10, 60000},
    {"--webhook-lease", "CRM_WEBHOOK_LEASE", 'i', offsetof(struct config, webhook_lease), 0, 2,
     3600},
    {"--moments-period", "CRM_MOMENTS_PERIOD", 'i', offsetof(struct config, moments_period), 0, 0,
     86400},
    {"--moments-time-zone", "CRM_MOMENTS_TIME_ZONE", 's',
     offsetof(struct config, moments_time_zone), 65, 0, 0},
    {"--moments-catch-up", "CRM_MOMENTS_CATCH_UP", 'i', offsetof(struct config, moments_catch_up),
     0, 0, 30},
    {"--segment-refresh-ms", "CRM_SEGMENT_REFRESH_MS", 'i',
     offsetof(struct config, segment_refresh_ms), 0, 0, 3600000},
    {"--segment-time-sweep", "CRM_SEGMENT_TIME_SWEEP", 'i',
     offsetof(struct config, segment_time_sweep), 0, 0, 7 * 86400},
};

#define SETTING_COUNT (sizeof(SETTINGS) / sizeof(SETTINGS[0]))

const char *config_usage(void)
{
    return "usage: crm-server [migrate | recompute-value] [options]\n"
           "\n"
           "  migrate                    apply pending migrations and exit\n"
           "  recompute-value            fit the CLV models, recompute value, RFM and tiers\n"
           "                             for every customer (progress on stderr), and exit\n"
           "  --as-of TIME               with recompute-value: value as of this RFC 3339 time\n"
           "                             (CRM_AS_OF, default now)\n"
           "  --value-schedule SEC       run a live value recompute every SEC seconds (one\n"
           "                             instance of several runs it); 0 = never\n"
           "                             (CRM_VALUE_SCHEDULE, default 0)\n"
           "  --live 0|1                 with recompute-value: 1 replaces the live values, 0\n"
           "                             writes the run's snapshot only (CRM_LIVE, default 1\n"
           "                             without --as-of, 0 with it)\n"
           "  --listen ADDR              listen address (CRM_LISTEN, default 127.0.0.1)\n"
           "  --port N                   TCP port (CRM_PORT, default 8080)\n"
           "  --db CONNINFO              PostgreSQL conninfo or URI (CRM_DATABASE_URL,\n"
           "                             default \"dbname=crm\")\n"
           "  --pool-size N              database connections (CRM_POOL_SIZE, default 16)\n"
           "  --read-pool-size N         connections for profile, lookup, timeline, segment\n"
           "                             and KPI reads, apart from the rest, so reads cannot\n"
           "                             crowd the CPU (CRM_READ_POOL_SIZE, default 0 =\n"
           "                             3 per CPU but at least --http-threads, at most\n"
           "                             --pool-size)\n"
           "  --http-threads N           HTTP worker threads, each serving many connections\n"
           "                             (epoll); long routes (segments, KPIs, value runs,\n"
           "                             merges, exports) run on the long-route threads\n"
           "                             (CRM_HTTP_THREADS, default 4 per CPU; 0 = one\n"
           "                             thread per connection)\n"
           "  --http-long-threads N      threads for the long routes, which queue for them\n"
           "                             in arrival order (CRM_HTTP_LONG_THREADS, default 4)\n"
           "  --http-long-queue N        long requests that may wait for those threads;\n"
           "                             more are answered 503 with Retry-After\n"
           "                             (CRM_HTTP_LONG_QUEUE, default 64)\n"
           "  --db-replica CONNINFO      streaming replica for profile, lookup, timeline,\n"
           "                             segment and KPI reads (CRM_DATABASE_REPLICA_URL)\n"
           "  --replica-wait-ms N        how long a read with CRM-Min-LSN waits for the\n"
           "                             replica before reading the primary\n"
           "                             (CRM_REPLICA_WAIT_MS, default 100)\n"
           "  --db-prepared 0|1          0 = no named prepared statements, for PgBouncer\n"
           "                             before 1.21 in transaction mode (CRM_DB_PREPARED,\n"
           "                             default 1)\n"
           "  --audit-flush-ms N         read audit rows are written in batches at least this\n"
           "                             often; 0 = one write per read (CRM_AUDIT_FLUSH_MS,\n"
           "                             default 50)\n"
           "  --body-limit BYTES         largest request body (CRM_BODY_LIMIT, default 1048576)\n"
           "  --max-connections N        concurrent HTTP connections (CRM_MAX_CONNECTIONS,\n"
           "                             default 1024)\n"
           "  --max-connections-per-ip N connections from one client address; more are\n"
           "                             closed at once (CRM_MAX_CONNECTIONS_PER_IP, default\n"
           "                             256, 0 = no limit; behind a proxy, at least the\n"
           "                             proxy's connections to this server)\n"
           "  --connection-timeout SEC   idle HTTP connection timeout (CRM_CONNECTION_TIMEOUT,\n"
           "                             default 30)\n"
           "  --header-timeout SEC       a new connection that has not sent a complete request\n"
           "                             head after this many idle seconds is closed\n"
           "                             (CRM_HEADER_TIMEOUT, default 10)\n"
           "  --db-wait SEC              wait this long for the database at start (CRM_DB_WAIT,\n"
           "                             default 30)\n"
           "  --drain-timeout SEC        on SIGTERM, wait this long for in-flight requests\n"
           "                             (CRM_DRAIN_TIMEOUT, default 30)\n"
           "  --rate-limit N             requests per second per API key, bursts up to 2N;\n"
           "                             429 above (CRM_RATE_LIMIT, default 1000, 0 = off)\n"
           "  --access-log 0|1           one JSON line per request on stdout (CRM_ACCESS_LOG,\n"
           "                             default 1)\n"
           "  --json-depth N             deepest nesting accepted in a request body\n"
           "                             (CRM_JSON_DEPTH, default 32)\n"
           "  --tls-cert FILE            serve HTTPS with this PEM certificate (CRM_TLS_CERT)\n"
           "  --tls-key FILE             and this PEM private key (CRM_TLS_KEY)\n"
           "  --event-retention SEC      how long the change feed keeps events; older cursors\n"
           "                             answer 410 (CRM_EVENT_RETENTION, default 604800)\n"
           "  --webhook-workers N        webhook delivery threads; 0 = no delivery from this\n"
           "                             instance (CRM_WEBHOOK_WORKERS, default 4)\n"
           "  --webhook-allow-hosts LIST comma-separated CIDRs, addresses or host names that\n"
           "                             webhooks may reach although private, loopback or\n"
           "                             link-local (CRM_WEBHOOK_ALLOW_HOSTS, default none)\n"
           "  --webhook-timeout SEC      time allowed per delivery attempt, connect included\n"
           "                             (CRM_WEBHOOK_TIMEOUT, default 10)\n"
           "  --webhook-retry-base-ms N  first retry delay, doubled per attempt, jittered\n"
           "                             (CRM_WEBHOOK_RETRY_BASE_MS, default 5000)\n"
           "  --webhook-retry-max-ms N   longest retry delay (CRM_WEBHOOK_RETRY_MAX_MS,\n"
           "                             default 3600000)\n"
           "  --webhook-retry-horizon SEC a delivery still failing this long after its event\n"
           "                             is dead-lettered (CRM_WEBHOOK_RETRY_HORIZON,\n"
           "                             default 86400)\n"
           "  --webhook-poll-ms N        how often an idle delivery worker looks for work\n"
           "                             (CRM_WEBHOOK_POLL_MS, default 1000)\n"
           "  --webhook-lease SEC        how long a claimed delivery stays claimed; an instance\n"
           "                             that dies holding it frees it after this\n"
           "                             (CRM_WEBHOOK_LEASE, default 60)\n"
           "  --moments-period SEC       how often this instance runs the daily moments run\n"
           "                             (moment.due events; one instance at a time), first\n"
           "                             at start (CRM_MOMENTS_PERIOD, default 300, 0 = off)\n"
           "  --moments-time-zone ZONE   IANA zone whose date is today for that run\n"
           "                             (CRM_MOMENTS_TIME_ZONE, default UTC)\n"
           "  --moments-catch-up DAYS    days missed (no instance running) that the run\n"
           "                             catches up (CRM_MOMENTS_CATCH_UP, default 7)\n"
           "  --segment-refresh-ms N     how often the live segment membership follows the\n"
           "                             change feed; 0 = not in this instance\n"
           "                             (CRM_SEGMENT_REFRESH_MS, default 1000)\n"
           "  --segment-time-sweep SEC   how often segments whose rules compare with the\n"
           "                             current time are re-evaluated over every customer;\n"
           "                             0 = never (CRM_SEGMENT_TIME_SWEEP, default 300)\n"
           "  --no-migrate               do not apply migrations at start\n"
           "  --help                     this text\n";
}

static bool set_value(struct config *cfg, const struct setting *s, const char *value, char *err,
                      size_t errlen)
{
    char *base = (char *)cfg + s->offset;
    if (s->kind == 's') {
        if (strlen(value) >= s->size) {
            snprintf(err, errlen, "%s / %s is too long", s->flag, s->env);
            return false;
        }
        strcpy(base, value);
        return true;
    } else {
        char *end;
        long v;
        errno = 0;
        v = strtol(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || v < s->min || v > s->max) {
            snprintf(err, errlen, "%s / %s must be an integer from %ld to %ld, got '%s'", s->flag,
                     s->env, s->min, s->max, value);
            return false;
        }
        if (s->kind == 'i')
            *(int *)(void *)base = (int)v;
        else
            *(size_t *)(void *)base = (size_t)v;
        return true;
    }
}

bool config_load(struct config *cfg, int argc, char **argv, getenv_fn env, char *err,
                 size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    strcpy(cfg->listen, "127.0.0.1");
    cfg->port = 8080;
    strcpy(cfg->database_url, "dbname=crm");
    cfg->pool_size = 16;
    cfg->body_limit = 1024 * 1024;
    cfg->max_connections = 1024;
    cfg->max_connections_per_ip = 256;
    cfg->connection_timeout = 30;
    cfg->header_timeout = 10;
    cfg->db_wait = 30;
    cfg->drain_timeout = 30;
    cfg->rate_limit = 1000;
    cfg->json_depth = 32;
    cfg->access_log = 1;
    cfg->replica_wait_ms = 100;
    cfg->db_prepared = 1;
    cfg->audit_flush_ms = 50;
    cfg->http_threads = -1; /* 4 per CPU: see http_worker_threads */
    cfg->http_long_threads = 4;
    cfg->http_long_queue = 64;
    cfg->event_retention = 7 * 86400;
    cfg->webhook_workers = 4;
    cfg->live = -1;
    cfg->webhook_timeout = 10;
    cfg->webhook_retry_base_ms = 5000;
    cfg->webhook_retry_max_ms = 3600000;
    cfg->webhook_retry_horizon = 86400;
    cfg->webhook_poll_ms = 1000;
    cfg->webhook_lease = 60;
    cfg->moments_period = 300;
    strcpy(cfg->moments_time_zone, "UTC");
    cfg->moments_catch_up = 7;
    cfg->segment_refresh_ms = 1000;
    cfg->segment_time_sweep = 300;

    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const char *v = env(SETTINGS[i].env);
        if (v != NULL && *v != '\0' && !set_value(cfg, &SETTINGS[i], v, err, errlen))
            return false;
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        bool known = false;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cfg->help = true;
            continue;
        }
        if (strcmp(arg, "--no-migrate") == 0) {
            cfg->no_migrate = true;
            continue;
        }
        if (a == 1 && strcmp(arg, "migrate") == 0) {
            cfg->migrate_only = true;
            continue;
        }
        if (a == 1 && strcmp(arg, "recompute-value") == 0) {
            cfg->recompute_value = true;
            continue;
        }
        for (size_t i = 0; i < SETTING_COUNT && !known; i++) {
            size_t flen = strlen(SETTINGS[i].flag);
            const char *value = NULL;
            if (strcmp(arg, SETTINGS[i].flag) == 0) {
                if (a + 1 >= argc) {
                    snprintf(err, errlen, "%s needs a value", SETTINGS[i].flag);
                    return false;
                }
                value = argv[++a];
            } else if (strncmp(arg, SETTINGS[i].flag, flen) == 0 && arg[flen] == '=') {
                value = arg + flen + 1;
            } else {
                continue;
            }
            known = true;
            if (!set_value(cfg, &SETTINGS[i], value, err, errlen))
                return false;
        }
        if (!known) {
            snprintf(err, errlen, "unknown argument '%s' (try --help)", arg);
            return false;
        }
    }
    if ((cfg->tls_cert[0] != '\0') != (cfg->tls_key[0] != '\0')) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together");
        return false;
    }
    if (!webhook_allow_valid(cfg->webhook_allow_hosts, err + 0, errlen)) {
        char why[160];
        snprintf(why, sizeof(why), "%s", err);
        snprintf(err, errlen, "--webhook-allow-hosts / CRM_WEBHOOK_ALLOW_HOSTS: %s", why);
        return false;
    }
    if (!time_zone_name_plausible(cfg->moments_time_zone)) {
        snprintf(err, errlen, "--moments-time-zone / CRM_MOMENTS_TIME_ZONE must be an IANA time "
                 "zone name such as Europe/Paris");
        return false;
    }
    if (cfg->webhook_lease <= cfg->webhook_timeout) {
        snprintf(err, errlen, "--webhook-lease must be longer than --webhook-timeout (a delivery "
                 "still running must not be claimed again)");
        return false;
    }
    return true;
}
