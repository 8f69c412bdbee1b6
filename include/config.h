/*
 * config: the server's settings, from environment variables overridden by
 * command-line flags. Owns the defaults, the names, the --help text and
 * range checks. Pure: reads only the arguments and the getenv callback.
 */
#ifndef CRM_CONFIG_H
#define CRM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

struct config {
    char listen[64];        /* CRM_LISTEN, --listen: IPv4/IPv6 address */
    int port;               /* CRM_PORT, --port */
    char database_url[1024];/* CRM_DATABASE_URL, --db: libpq conninfo or URI */
    int pool_size;          /* CRM_POOL_SIZE, --pool-size */
    int read_pool_size;     /* CRM_READ_POOL_SIZE, --read-pool-size: 0 = 3 x CPUs,
                               at least one per HTTP worker */
    int http_threads;       /* CRM_HTTP_THREADS, --http-threads: -1 (default) = 4 x CPUs,
                               0 = one thread per connection */
    int http_long_threads;  /* CRM_HTTP_LONG_THREADS, --http-long-threads: threads for
                               the long routes with worker threads */
    int http_long_queue;    /* CRM_HTTP_LONG_QUEUE, --http-long-queue: long requests that
                               may wait for those threads; more are answered 503 */
    size_t body_limit;      /* CRM_BODY_LIMIT, --body-limit: bytes */
    int max_connections;    /* CRM_MAX_CONNECTIONS, --max-connections */
    int max_connections_per_ip; /* CRM_MAX_CONNECTIONS_PER_IP, --max-connections-per-ip:
                               connections from one client address, 0 = no limit */
    int connection_timeout; /* CRM_CONNECTION_TIMEOUT, --connection-timeout: seconds idle */
    int header_timeout;     /* CRM_HEADER_TIMEOUT, --header-timeout: seconds idle before a
                               new connection's first request head is complete */
    int db_wait;            /* CRM_DB_WAIT, --db-wait: seconds to wait for the database at start */
    int drain_timeout;      /* CRM_DRAIN_TIMEOUT, --drain-timeout: seconds to finish requests on SIGTERM */
    int rate_limit;         /* CRM_RATE_LIMIT, --rate-limit: requests/s per API key, 0 = off */
    int json_depth;         /* CRM_JSON_DEPTH, --json-depth: deepest nesting of a request body */
    int access_log;         /* CRM_ACCESS_LOG, --access-log: 1 = JSON line per request on stdout */
    char tls_cert[512];     /* CRM_TLS_CERT, --tls-cert: PEM certificate file; enables HTTPS */
    char tls_key[512];      /* CRM_TLS_KEY, --tls-key: PEM private key file */
    char replica_url[1024]; /* CRM_DATABASE_REPLICA_URL, --db-replica: streaming replica for reads */
    int replica_wait_ms;    /* CRM_REPLICA_WAIT_MS, --replica-wait-ms: wait for CRM-Min-LSN */
    int db_prepared;        /* CRM_DB_PREPARED, --db-prepared: 0 = no named prepared statements */
    int audit_flush_ms;     /* CRM_AUDIT_FLUSH_MS, --audit-flush-ms: read-audit batching interval */
    int event_retention;    /* CRM_EVENT_RETENTION, --event-retention: seconds the change
                               feed keeps events (older cursors answer 410) */
    int webhook_workers;    /* CRM_WEBHOOK_WORKERS, --webhook-workers: delivery threads,
                               0 = this instance delivers nothing */
    char webhook_allow_hosts[1024]; /* CRM_WEBHOOK_ALLOW_HOSTS, --webhook-allow-hosts:
                               CIDRs, addresses or hosts a webhook may reach although
                               private, loopback or link-local */
    int webhook_timeout;    /* CRM_WEBHOOK_TIMEOUT, --webhook-timeout: seconds per attempt */
    int webhook_retry_base_ms; /* CRM_WEBHOOK_RETRY_BASE_MS: first retry delay */
    int webhook_retry_max_ms;  /* CRM_WEBHOOK_RETRY_MAX_MS: longest retry delay */
    int webhook_retry_horizon; /* CRM_WEBHOOK_RETRY_HORIZON: seconds before dead-lettering */
    int webhook_poll_ms;    /* CRM_WEBHOOK_POLL_MS: how often an idle worker looks for work */
    int segment_refresh_ms; /* CRM_SEGMENT_REFRESH_MS: live membership refresher period; 0 = no
                             * refresher in this instance */
    int segment_time_sweep; /* CRM_SEGMENT_TIME_SWEEP: seconds between re-evaluations of the
                             * segments whose rules compare with now(); 0 = never */
    int webhook_lease;      /* CRM_WEBHOOK_LEASE: seconds a claimed delivery stays claimed */
    int moments_period;     /* CRM_MOMENTS_PERIOD, --moments-period: seconds between runs of
                               the daily moments run, 0 = none from this instance */
    char moments_time_zone[65]; /* CRM_MOMENTS_TIME_ZONE, --moments-time-zone: the zone
                               whose date is "today" for the moments run */
    int moments_catch_up;   /* CRM_MOMENTS_CATCH_UP, --moments-catch-up: missed days run */
    bool migrate_only;      /* "migrate" subcommand */
    bool recompute_value;   /* "recompute-value" subcommand */
    char as_of[64];         /* --as-of: value as of this time (default now) */
    int value_schedule;     /* --value-schedule SEC: a live value run every SEC seconds
                               (one instance runs it); 0 = none (default) */
    int live;               /* --live 0|1: the run replaces the live values (default:
                               1 without --as-of, 0 with it); -1 when not given */
    bool no_migrate;        /* --no-migrate */
    bool help;              /* --help */
};

typedef const char *(*getenv_fn)(const char *name);

/* Fill cfg from defaults, env and argv. Returns false with a message in err. */
bool config_load(struct config *cfg, int argc, char **argv, getenv_fn env, char *err,
                 size_t errlen);

const char *config_usage(void);

#endif
