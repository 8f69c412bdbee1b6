/*
 * Unit tests for config: defaults < environment < flags, value forms, range
 * checks, subcommand and boolean flags. The environment is a fake getenv.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

/* Fake environment: NULL-terminated name/value pairs. */
static const char *const *fake_env;

static const char *env_get(const char *name)
{
    for (const char *const *p = fake_env; p && p[0]; p += 2)
        if (strcmp(p[0], name) == 0)
            return p[1];
    return NULL;
}

static const char *env_none(const char *name)
{
    (void)name;
    return NULL;
}

static struct config cfg;
static char err[256];

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static bool load(int argc, char **argv, const char *const *env)
{
    fake_env = env;
    err[0] = '\0';
    return config_load(&cfg, argc, argv, env_get, err, sizeof(err));
}

START_TEST(test_defaults)
{
    char *argv[] = {"crm-server"};
    memset(&cfg, 0x55, sizeof(cfg));
    ck_assert(config_load(&cfg, ARGC(argv), argv, env_none, err, sizeof(err)));
    ck_assert_str_eq(cfg.listen, "127.0.0.1");
    ck_assert_int_eq(cfg.port, 8080);
    ck_assert_str_eq(cfg.database_url, "dbname=crm");
    ck_assert_int_eq(cfg.pool_size, 16);
    ck_assert_uint_eq(cfg.body_limit, 1048576);
    ck_assert_int_eq(cfg.max_connections, 1024);
    ck_assert_int_eq(cfg.max_connections_per_ip, 256);
    ck_assert_int_eq(cfg.connection_timeout, 30);
    ck_assert_int_eq(cfg.header_timeout, 10);
    ck_assert_int_eq(cfg.db_wait, 30);
    ck_assert_int_eq(cfg.drain_timeout, 30);
    ck_assert(!cfg.migrate_only);
    ck_assert(!cfg.no_migrate);
    ck_assert(!cfg.help);
    ck_assert(!cfg.recompute_value);
    ck_assert_str_eq(cfg.as_of, "");
    ck_assert_str_eq(cfg.replica_url, "");
    ck_assert_int_eq(cfg.replica_wait_ms, 100);
    ck_assert_int_eq(cfg.db_prepared, 1);
    ck_assert_int_eq(cfg.audit_flush_ms, 50);
    ck_assert_int_eq(cfg.read_pool_size, 0); /* 0 = 3 per CPU */
    ck_assert_int_eq(cfg.http_threads, -1);  /* 4 per CPU */
    ck_assert_int_eq(cfg.http_long_threads, 4);
    ck_assert_int_eq(cfg.http_long_queue, 64);

    /* argc 0 / argv with only the program name behave the same */
    ck_assert(config_load(&cfg, 0, argv, env_none, err, sizeof(err)));
    ck_assert_int_eq(cfg.port, 8080);
}
END_TEST

START_TEST(test_env_overrides)
{
    static const char *const env[] = {
        "CRM_LISTEN", "0.0.0.0",
        "CRM_PORT", "9090",
        "CRM_DATABASE_URL", "postgresql://crm@db/crm",
        "CRM_POOL_SIZE", "4",
        "CRM_BODY_LIMIT", "2048",
        "CRM_MAX_CONNECTIONS", "10",
        "CRM_CONNECTION_TIMEOUT", "5",
        "CRM_MAX_CONNECTIONS_PER_IP", "0",
        "CRM_HEADER_TIMEOUT", "2",
        "CRM_DB_WAIT", "0",
        "CRM_DRAIN_TIMEOUT", "7",
        "PORT", "1", /* unrelated names are ignored */
        NULL,
    };
    char *argv[] = {"crm-server"};
    ck_assert_msg(load(ARGC(argv), argv, env), "failed: %s", err);
    ck_assert_str_eq(cfg.listen, "0.0.0.0");
    ck_assert_int_eq(cfg.port, 9090);
    ck_assert_str_eq(cfg.database_url, "postgresql://crm@db/crm");
    ck_assert_int_eq(cfg.pool_size, 4);
    ck_assert_uint_eq(cfg.body_limit, 2048);
    ck_assert_int_eq(cfg.max_connections, 10);
    ck_assert_int_eq(cfg.connection_timeout, 5);
    ck_assert_int_eq(cfg.max_connections_per_ip, 0);
    ck_assert_int_eq(cfg.header_timeout, 2);
    ck_assert_int_eq(cfg.db_wait, 0);
    ck_assert_int_eq(cfg.drain_timeout, 7);
}
END_TEST

START_TEST(test_scale_out_settings)
{
    static const char *const env[] = {
        "CRM_DATABASE_REPLICA_URL", "host=replica dbname=crm",
        "CRM_REPLICA_WAIT_MS", "250",
        "CRM_DB_PREPARED", "0",
        "CRM_READ_POOL_SIZE", "5",
        "CRM_HTTP_THREADS", "0",
        "CRM_HTTP_LONG_THREADS", "2",
        "CRM_HTTP_LONG_QUEUE", "5",
        NULL,
    };
    char *argv[] = {"crm-server", "--audit-flush-ms", "0"};
    char *bad_prepared[] = {"crm-server", "--db-prepared", "2"};
    char *bad_wait[] = {"crm-server", "--replica-wait-ms=-1"};
    char *bad_threads[] = {"crm-server", "--http-threads", "-1"};
    char *bad_long[] = {"crm-server", "--http-long-threads", "0"};
    char *bad_queue[] = {"crm-server", "--http-long-queue", "0"};
    ck_assert_msg(load(ARGC(argv), argv, env), "failed: %s", err);
    ck_assert_str_eq(cfg.replica_url, "host=replica dbname=crm");
    ck_assert_int_eq(cfg.replica_wait_ms, 250);
    ck_assert_int_eq(cfg.db_prepared, 0);
    ck_assert_int_eq(cfg.audit_flush_ms, 0);
    ck_assert_int_eq(cfg.read_pool_size, 5);
    ck_assert_int_eq(cfg.http_threads, 0); /* one thread per connection */
    ck_assert_int_eq(cfg.http_long_threads, 2);
    ck_assert_int_eq(cfg.http_long_queue, 5);
    ck_assert(!load(ARGC(bad_prepared), bad_prepared, NULL));
    ck_assert_ptr_nonnull(strstr(err, "--db-prepared"));
    ck_assert(!load(ARGC(bad_threads), bad_threads, NULL));
    ck_assert_ptr_nonnull(strstr(err, "--http-threads"));
    ck_assert(!load(ARGC(bad_long), bad_long, NULL));
    ck_assert_ptr_nonnull(strstr(err, "--http-long-threads"));
    ck_assert(!load(ARGC(bad_queue), bad_queue, NULL));
    ck_assert_ptr_nonnull(strstr(err, "--http-long-queue"));
    ck_assert(!load(ARGC(bad_wait), bad_wait, NULL));
    ck_assert_ptr_nonnull(strstr(err, "--replica-wait-ms"));
}
END_TEST

START_TEST(test_env_empty_ignored)
{
    static const char *const env[] = {"CRM_PORT", "", "CRM_LISTEN", "", NULL};
    char *argv[] = {"crm-server"};
    ck_assert_msg(load(ARGC(argv), argv, env), "failed: %s", err);
    ck_assert_int_eq(cfg.port, 8080);
    ck_assert_str_eq(cfg.listen, "127.0.0.1");
}
END_TEST

START_TEST(test_env_bad)
{
    static const char *const env[] = {"CRM_PORT", "http", NULL};
    static const char *const env2[] = {"CRM_POOL_SIZE", "0", NULL};
    char *argv[] = {"crm-server"};
    ck_assert(!load(ARGC(argv), argv, env));
    ck_assert_str_eq(err, "--port / CRM_PORT must be an integer from 1 to 65535, got 'http'");
    ck_assert(!load(ARGC(argv), argv, env2));
    ck_assert_str_eq(err, "--pool-size / CRM_POOL_SIZE must be an integer from 1 to 256, got '0'");
}
END_TEST

START_TEST(test_flags_override_env)
{
    static const char *const env[] = {"CRM_PORT", "9090", "CRM_LISTEN", "0.0.0.0",
                                      "CRM_DATABASE_URL", "dbname=env", NULL};
    char *argv[] = {"crm-server", "--port", "9100", "--listen", "::1", "--db=dbname=flag host=x",
                    "--pool-size=32", "--body-limit", "1024", "--max-connections=100000",
                    "--connection-timeout", "3600", "--db-wait=0", "--drain-timeout", "60",
                    "--max-connections-per-ip=100000", "--header-timeout", "3600"};
    ck_assert_msg(load(ARGC(argv), argv, env), "failed: %s", err);
    ck_assert_int_eq(cfg.port, 9100);
    ck_assert_str_eq(cfg.listen, "::1");
    ck_assert_str_eq(cfg.database_url, "dbname=flag host=x"); /* only the first '=' splits */
    ck_assert_int_eq(cfg.pool_size, 32);
    ck_assert_uint_eq(cfg.body_limit, 1024);
    ck_assert_int_eq(cfg.max_connections, 100000);
    ck_assert_int_eq(cfg.connection_timeout, 3600);
    ck_assert_int_eq(cfg.max_connections_per_ip, 100000);
    ck_assert_int_eq(cfg.header_timeout, 3600);
    ck_assert_int_eq(cfg.db_wait, 0);
    ck_assert_int_eq(cfg.drain_timeout, 60);
}
END_TEST

START_TEST(test_port_equals_form)
{
    char *argv[] = {"crm-server", "--port=9000"};
    char *argv2[] = {"crm-server", "--port=1", "--port", "65535"}; /* last one wins */
    ck_assert_msg(load(ARGC(argv), argv, NULL), "failed: %s", err);
    ck_assert_int_eq(cfg.port, 9000);
    ck_assert_msg(load(ARGC(argv2), argv2, NULL), "failed: %s", err);
    ck_assert_int_eq(cfg.port, 65535);
}
END_TEST

START_TEST(test_bad_port)
{
    static const char *const bad[] = {"0", "70000", "abc", "65536", "-1", "80x", "", "8.5",
                                      "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char flag[64], expect[160];
        char *argv[] = {"crm-server", "--port", (char *)bad[i]};
        char *argv2[] = {"crm-server", flag};
        snprintf(expect, sizeof(expect),
                 "--port / CRM_PORT must be an integer from 1 to 65535, got '%s'", bad[i]);
        cfg.port = 1234;
        ck_assert_msg(!load(ARGC(argv), argv, NULL), "port '%s' accepted", bad[i]);
        ck_assert_str_eq(err, expect);
        snprintf(flag, sizeof(flag), "--port=%s", bad[i]);
        ck_assert_msg(!load(ARGC(argv2), argv2, NULL), "%s accepted", flag);
        ck_assert_str_eq(err, expect);
    }
}
END_TEST

START_TEST(test_ranges)
{
    char *ok1[] = {"crm-server", "--body-limit=67108864", "--pool-size=256", "--db-wait=3600"};
    char *bad1[] = {"crm-server", "--body-limit=1023"};
    char *bad2[] = {"crm-server", "--body-limit=67108865"};
    char *bad3[] = {"crm-server", "--pool-size=257"};
    char *bad4[] = {"crm-server", "--max-connections=0"};
    char *bad5[] = {"crm-server", "--connection-timeout=0"};
    char *bad6[] = {"crm-server", "--drain-timeout=-1"};
    char *bad7[] = {"crm-server", "--db-wait=3601"};
    char *bad8[] = {"crm-server", "--header-timeout=0"};
    char *bad9[] = {"crm-server", "--max-connections-per-ip=-1"};
    ck_assert_msg(load(ARGC(ok1), ok1, NULL), "failed: %s", err);
    ck_assert_uint_eq(cfg.body_limit, 67108864);
    ck_assert_int_eq(cfg.pool_size, 256);
    ck_assert_int_eq(cfg.db_wait, 3600);
    ck_assert(!load(ARGC(bad1), bad1, NULL));
    ck_assert_str_eq(err, "--body-limit / CRM_BODY_LIMIT must be an integer from 1024 to "
                          "67108864, got '1023'");
    ck_assert(!load(ARGC(bad2), bad2, NULL));
    ck_assert(!load(ARGC(bad3), bad3, NULL));
    ck_assert(!load(ARGC(bad4), bad4, NULL));
    ck_assert(!load(ARGC(bad5), bad5, NULL));
    ck_assert(!load(ARGC(bad6), bad6, NULL));
    ck_assert(!load(ARGC(bad8), bad8, NULL));
    ck_assert_str_eq(err, "--header-timeout / CRM_HEADER_TIMEOUT must be an integer from 1 to "
                          "3600, got '0'");
    ck_assert(!load(ARGC(bad9), bad9, NULL));
    ck_assert(!load(ARGC(bad7), bad7, NULL));
    ck_assert_str_eq(err, "--db-wait / CRM_DB_WAIT must be an integer from 0 to 3600, got '3601'");
}
END_TEST

START_TEST(test_string_too_long)
{
    char longval[200], longurl[1100];
    char *argv[] = {"crm-server", "--listen", longval};
    char *argv2[] = {"crm-server", "--db", longurl};
    memset(longval, 'a', 64);
    longval[64] = '\0';
    ck_assert(!load(ARGC(argv), argv, NULL));
    ck_assert_str_eq(err, "--listen / CRM_LISTEN is too long");
    longval[63] = '\0';
    ck_assert_msg(load(ARGC(argv), argv, NULL), "failed: %s", err);
    ck_assert_str_eq(cfg.listen, longval);
    memset(longurl, 'd', 1024);
    longurl[1024] = '\0';
    ck_assert(!load(ARGC(argv2), argv2, NULL));
    ck_assert_str_eq(err, "--db / CRM_DATABASE_URL is too long");
    longurl[1023] = '\0';
    ck_assert_msg(load(ARGC(argv2), argv2, NULL), "failed: %s", err);
    ck_assert_uint_eq(strlen(cfg.database_url), 1023);
}
END_TEST

START_TEST(test_unknown_and_missing)
{
    char *a1[] = {"crm-server", "--bogus"};
    char *a2[] = {"crm-server", "--port"};
    char *a3[] = {"crm-server", "--portx=1"};
    char *a4[] = {"crm-server", "serve"};
    char *a5[] = {"crm-server", "--no-migrate", "migrate"}; /* subcommand must come first */
    char *a6[] = {"crm-server", "-p", "80"};
    char *a7[] = {"crm-server", "--db-wai=3"};
    ck_assert(!load(ARGC(a1), a1, NULL));
    ck_assert_str_eq(err, "unknown argument '--bogus' (try --help)");
    ck_assert(!load(ARGC(a2), a2, NULL));
    ck_assert_str_eq(err, "--port needs a value");
    ck_assert(!load(ARGC(a3), a3, NULL));
    ck_assert_str_eq(err, "unknown argument '--portx=1' (try --help)");
    ck_assert(!load(ARGC(a4), a4, NULL));
    ck_assert_str_eq(err, "unknown argument 'serve' (try --help)");
    ck_assert(!load(ARGC(a5), a5, NULL));
    ck_assert_str_eq(err, "unknown argument 'migrate' (try --help)");
    ck_assert(!load(ARGC(a6), a6, NULL));
    ck_assert_str_eq(err, "unknown argument '-p' (try --help)");
    ck_assert(!load(ARGC(a7), a7, NULL));
    ck_assert_str_eq(err, "unknown argument '--db-wai=3' (try --help)");
}
END_TEST

START_TEST(test_migrate_help_no_migrate)
{
    char *a1[] = {"crm-server", "migrate"};
    char *a2[] = {"crm-server", "migrate", "--db", "dbname=x"};
    char *a3[] = {"crm-server", "--help"};
    char *a4[] = {"crm-server", "-h"};
    char *a5[] = {"crm-server", "--no-migrate", "--port=81"};
    char *a6[] = {"crm-server", "--help", "--port=0"};

    ck_assert(load(ARGC(a1), a1, NULL));
    ck_assert(cfg.migrate_only);
    ck_assert(!cfg.no_migrate);
    ck_assert(!cfg.help);

    ck_assert(load(ARGC(a2), a2, NULL));
    ck_assert(cfg.migrate_only);
    ck_assert_str_eq(cfg.database_url, "dbname=x");

    ck_assert(load(ARGC(a3), a3, NULL));
    ck_assert(cfg.help);
    ck_assert(!cfg.migrate_only);
    ck_assert(load(ARGC(a4), a4, NULL));
    ck_assert(cfg.help);

    ck_assert(load(ARGC(a5), a5, NULL));
    ck_assert(cfg.no_migrate);
    ck_assert(!cfg.migrate_only);
    ck_assert_int_eq(cfg.port, 81);

    /* --help does not excuse a bad value later on the line */
    ck_assert(!load(ARGC(a6), a6, NULL));
}
END_TEST

START_TEST(test_recompute_value)
{
    static const char *const env[] = {"CRM_AS_OF", "2026-01-01T00:00:00Z", NULL};
    char *a1[] = {"crm-server", "recompute-value", "--as-of", "2026-06-30T12:00:00Z"};
    char *a2[] = {"crm-server", "recompute-value"};
    char *a3[] = {"crm-server", "--port=81", "recompute-value"};
    ck_assert_msg(load(ARGC(a1), a1, env), "failed: %s", err);
    ck_assert(cfg.recompute_value);
    ck_assert(!cfg.migrate_only);
    ck_assert_str_eq(cfg.as_of, "2026-06-30T12:00:00Z");
    ck_assert_msg(load(ARGC(a2), a2, env), "failed: %s", err);
    ck_assert(cfg.recompute_value);
    ck_assert_str_eq(cfg.as_of, "2026-01-01T00:00:00Z");
    ck_assert_msg(load(ARGC(a2), a2, NULL), "failed: %s", err);
    ck_assert_str_eq(cfg.as_of, ""); /* default: now */
    ck_assert(!load(ARGC(a3), a3, NULL));
    ck_assert_str_eq(err, "unknown argument 'recompute-value' (try --help)");
}
END_TEST

START_TEST(test_moments_settings)
{
    char *none[] = {"crm-server"};
    char *flags[] = {"crm-server", "--moments-period", "0", "--moments-time-zone",
                     "America/Port-au-Prince"};
    char *bad_zone[] = {"crm-server", "--moments-time-zone", "Europe//Paris"};
    char *bad_catch_up[] = {"crm-server", "--moments-catch-up", "31"};
    static const char *const env[] = {"CRM_MOMENTS_PERIOD", "60", "CRM_MOMENTS_CATCH_UP", "0",
                                      "CRM_MOMENTS_TIME_ZONE", "Europe/Paris", NULL};
    ck_assert(load(ARGC(none), none, NULL));
    ck_assert_int_eq(cfg.moments_period, 300);
    ck_assert_str_eq(cfg.moments_time_zone, "UTC");
    ck_assert_int_eq(cfg.moments_catch_up, 7);
    ck_assert(load(ARGC(none), none, env));
    ck_assert_int_eq(cfg.moments_period, 60);
    ck_assert_int_eq(cfg.moments_catch_up, 0);
    ck_assert_str_eq(cfg.moments_time_zone, "Europe/Paris");
    ck_assert(load(ARGC(flags), flags, env)); /* 0: no run from this instance */
    ck_assert_int_eq(cfg.moments_period, 0);
    ck_assert_str_eq(cfg.moments_time_zone, "America/Port-au-Prince");
    ck_assert(!load(ARGC(bad_zone), bad_zone, NULL));
    ck_assert_ptr_nonnull(strstr(err, "--moments-time-zone"));
    ck_assert(!load(ARGC(bad_catch_up), bad_catch_up, NULL));
    ck_assert_ptr_nonnull(strstr(err, "from 0 to 30"));
}
END_TEST

START_TEST(test_usage)
{
    const char *u = config_usage();
    static const char *const names[] = {"migrate", "--listen", "--port", "--db", "--pool-size",
                                        "--body-limit", "--max-connections",
                                        "--connection-timeout", "--db-wait", "--drain-timeout",
                                        "--no-migrate", "--help", "recompute-value", "--as-of",
                                        "CRM_AS_OF", "CRM_LISTEN", "CRM_PORT",
                                        "CRM_DATABASE_URL", "CRM_POOL_SIZE", "CRM_BODY_LIMIT",
                                        "CRM_MAX_CONNECTIONS", "CRM_CONNECTION_TIMEOUT",
                                        "CRM_DB_WAIT", "CRM_DRAIN_TIMEOUT",
                                        "--max-connections-per-ip", "CRM_MAX_CONNECTIONS_PER_IP",
                                        "--header-timeout", "CRM_HEADER_TIMEOUT"};
    ck_assert_int_eq(strncmp(u, "usage: crm-server", 17), 0);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        ck_assert_msg(strstr(u, names[i]) != NULL, "usage lacks %s", names[i]);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("load");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_env_overrides);
    tcase_add_test(tc, test_env_empty_ignored);
    tcase_add_test(tc, test_env_bad);
    tcase_add_test(tc, test_flags_override_env);
    tcase_add_test(tc, test_port_equals_form);
    tcase_add_test(tc, test_bad_port);
    tcase_add_test(tc, test_ranges);
    tcase_add_test(tc, test_string_too_long);
    tcase_add_test(tc, test_unknown_and_missing);
    tcase_add_test(tc, test_migrate_help_no_migrate);
    tcase_add_test(tc, test_recompute_value);
    tcase_add_test(tc, test_usage);
    tcase_add_test(tc, test_moments_settings);
    tcase_add_test(tc, test_scale_out_settings);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
