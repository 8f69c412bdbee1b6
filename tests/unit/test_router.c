/*
 * Unit tests for router: the route table, {id} parsing into canonical UUIDs,
 * and the 404 / 405 (with Allow) / bad-UUID distinctions.
 */
#include <check.h>
#include <string.h>

#include "router.h"

#define UUID_LC "123e4567-e89b-42d3-a456-426614174abc"
#define UUID_UC "123E4567-E89B-42D3-A456-426614174ABC"

static struct route_match m;

static void route(const char *method, const char *path)
{
    memset(&m, 0x7e, sizeof(m)); /* garbage: route_request must reset everything */
    route_request(method, path, &m);
}

static void expect_match(const char *method, const char *path, enum route r, const char *id)
{
    route(method, path);
    ck_assert_msg(m.status == ROUTE_MATCHED, "%s %s: status %d", method, path, m.status);
    ck_assert_msg(m.route == r, "%s %s: route %d, want %d", method, path, m.route, r);
    ck_assert_str_eq(m.id, id);
}

static void expect_status(const char *method, const char *path, enum route_status st,
                          const char *allow)
{
    route(method, path);
    ck_assert_msg(m.status == st, "%s %s: status %d, want %d", method, path, m.status, st);
    if (allow != NULL)
        ck_assert_str_eq(m.allow, allow);
}

START_TEST(test_all_routes)
{
    expect_match("GET", "/health", ROUTE_HEALTH, "");
    expect_match("GET", "/ready", ROUTE_READY, "");
    expect_match("POST", "/v1/customers:resolve", ROUTE_CUSTOMER_RESOLVE, "");
    expect_match("GET", "/v1/customers", ROUTE_CUSTOMER_LOOKUP, "");
    expect_match("GET", "/v1/customers/" UUID_LC, ROUTE_CUSTOMER_GET, UUID_LC);
    expect_match("PATCH", "/v1/customers/" UUID_LC "/traits", ROUTE_CUSTOMER_TRAITS, UUID_LC);
    expect_match("GET", "/v1/customers/" UUID_LC "/interactions", ROUTE_CUSTOMER_TIMELINE,
                 UUID_LC);
    expect_match("POST", "/v1/interactions", ROUTE_INTERACTION_CREATE, "");
    expect_match("POST", "/v1/interactions:batch", ROUTE_INTERACTION_BATCH, "");
    /* a path served by a single method leaves allow empty on a match */
    route("GET", "/v1/customers/" UUID_LC);
    ck_assert_str_eq(m.allow, "");
}
END_TEST

START_TEST(test_activation_routes)
{
    expect_match("GET", "/v1/events", ROUTE_EVENTS, "");
    expect_match("POST", "/v1/webhooks", ROUTE_WEBHOOK_CREATE, "");
    expect_match("GET", "/v1/webhooks", ROUTE_WEBHOOK_LIST, "");
    expect_match("GET", "/v1/webhooks/" UUID_LC, ROUTE_WEBHOOK_GET, UUID_LC);
    expect_match("PATCH", "/v1/webhooks/" UUID_UC, ROUTE_WEBHOOK_UPDATE, UUID_LC);
    expect_match("DELETE", "/v1/webhooks/" UUID_LC, ROUTE_WEBHOOK_DELETE, UUID_LC);
    expect_match("GET", "/v1/webhooks/" UUID_LC "/deliveries", ROUTE_WEBHOOK_DELIVERIES, UUID_LC);
    expect_match("POST", "/v1/webhooks/" UUID_LC "/deliveries:replay", ROUTE_WEBHOOK_REPLAY,
                 UUID_LC);
    expect_status("PUT", "/v1/webhooks/" UUID_LC, ROUTE_METHOD_NOT_ALLOWED, "GET, PATCH, DELETE");
    expect_status("GET", "/v1/webhooks/" UUID_LC "/deliveries:replay", ROUTE_METHOD_NOT_ALLOWED,
                  "POST");
    expect_status("GET", "/v1/webhooks/x/deliveries", ROUTE_BAD_UUID, NULL);
    /* the feed: marketing and admin; webhooks: admin only; never a partner */
    ck_assert(role_allows(ROLE_MARKETING, ROUTE_EVENTS));
    ck_assert(role_allows(ROLE_ADMIN, ROUTE_EVENTS));
    ck_assert(!role_allows(ROLE_PARTNER, ROUTE_EVENTS));
    ck_assert(!role_allows(ROLE_FRONT_OFFICE, ROUTE_EVENTS));
    ck_assert(!role_allows(ROLE_CALL_CENTER, ROUTE_EVENTS));
    for (int r = ROUTE_WEBHOOK_CREATE; r <= ROUTE_WEBHOOK_REPLAY; r++) {
        ck_assert(role_allows(ROLE_ADMIN, (enum route)r));
        ck_assert(!role_allows(ROLE_MARKETING, (enum route)r));
        ck_assert(!role_allows(ROLE_PARTNER, (enum route)r));
    }
    ck_assert_int_eq(route_query_param_index(ROUTE_EVENTS, "after", 5), 0);
    ck_assert_int_eq(route_query_param_index(ROUTE_EVENTS, "types", 5), 1);
    ck_assert_int_eq(route_query_param_index(ROUTE_EVENTS, "cursor", 6), -1);
}
END_TEST

START_TEST(test_segment_and_value_routes)
{
    expect_match("POST", "/v1/segments", ROUTE_SEGMENT_CREATE, "");
    expect_match("GET", "/v1/segments", ROUTE_SEGMENT_LIST, "");
    expect_match("POST", "/v1/segments:preview", ROUTE_SEGMENT_PREVIEW, "");
    expect_match("GET", "/v1/segments/" UUID_UC, ROUTE_SEGMENT_GET, UUID_LC);
    expect_match("DELETE", "/v1/segments/" UUID_LC, ROUTE_SEGMENT_DELETE, UUID_LC);
    expect_match("PATCH", "/v1/segments/" UUID_UC, ROUTE_SEGMENT_UPDATE, UUID_LC);
    expect_match("GET", "/v1/customers/" UUID_LC "/segments", ROUTE_CUSTOMER_SEGMENTS, UUID_LC);
    expect_match("GET", "/v1/segments/" UUID_LC "/customers", ROUTE_SEGMENT_CUSTOMERS, UUID_LC);
    expect_match("GET", "/v1/segments/" UUID_LC "/export", ROUTE_SEGMENT_EXPORT, UUID_LC);
    /* look-alikes: marketing and admin, limit only, on the primary (it keeps the fit) */
    expect_match("GET", "/v1/segments/" UUID_UC "/lookalikes", ROUTE_SEGMENT_LOOKALIKES, UUID_LC);
    expect_status("POST", "/v1/segments/" UUID_LC "/lookalikes", ROUTE_METHOD_NOT_ALLOWED, "GET");
    expect_status("GET", "/v1/segments/nope/lookalikes", ROUTE_BAD_UUID, NULL);
    ck_assert_uint_eq(route_roles(ROUTE_SEGMENT_LOOKALIKES),
                      (1u << ROLE_MARKETING) | (1u << ROLE_ADMIN));
    ck_assert_str_eq(route_query_params(ROUTE_SEGMENT_LOOKALIKES), "limit");
    ck_assert(!route_reads_from_replica(ROUTE_SEGMENT_LOOKALIKES));
    expect_match("POST", "/v1/value:recompute", ROUTE_VALUE_RECOMPUTE, "");
    expect_match("GET", "/v1/kpis", ROUTE_KPIS, "");
    /* customize */
    expect_match("GET", "/v1/customers/" UUID_UC "/preferences", ROUTE_PREFERENCES_GET, UUID_LC);
    expect_match("PATCH", "/v1/customers/" UUID_LC "/preferences", ROUTE_PREFERENCES_PATCH,
                 UUID_LC);
    expect_match("GET", "/v1/customers/" UUID_LC "/consents", ROUTE_CONSENTS_LIST, UUID_LC);
    expect_match("POST", "/v1/customers/" UUID_LC "/consents", ROUTE_CONSENT_CREATE, UUID_LC);
    expect_match("GET", "/v1/customers/" UUID_LC "/contact-decision", ROUTE_CONTACT_DECISION,
                 UUID_LC);
    expect_match("GET", "/v1/moments", ROUTE_MOMENTS, "");
    expect_match("POST", "/v1/moments:run", ROUTE_MOMENTS_RUN, "");
    expect_match("GET", "/v1/customers/" UUID_LC "/export", ROUTE_CUSTOMER_EXPORT, UUID_LC);
    expect_match("DELETE", "/v1/customers/" UUID_UC, ROUTE_CUSTOMER_ERASE, UUID_LC);
    expect_match("GET", "/v1/partners/customers/" UUID_UC, ROUTE_PARTNER_CUSTOMER, UUID_LC);
    expect_status("DELETE", "/v1/customers/nope", ROUTE_BAD_UUID, NULL);
    /* two methods on one path: Allow lists both, in table order */
    expect_status("PUT", "/v1/segments", ROUTE_METHOD_NOT_ALLOWED, "POST, GET");
    expect_status("PUT", "/v1/segments/" UUID_LC, ROUTE_METHOD_NOT_ALLOWED, "GET, DELETE, PATCH");
    expect_status("GET", "/v1/segments:preview", ROUTE_METHOD_NOT_ALLOWED, "POST");
    expect_status("GET", "/v1/value:recompute", ROUTE_METHOD_NOT_ALLOWED, "POST");
    expect_status("POST", "/v1/kpis", ROUTE_METHOD_NOT_ALLOWED, "GET");
    expect_status("GET", "/v1/segments/nope", ROUTE_BAD_UUID, "");
    ck_assert_int_eq(m.route, ROUTE_SEGMENT_GET);
    expect_status("DELETE", "/v1/segments/nope", ROUTE_BAD_UUID, NULL);
    ck_assert_int_eq(m.route, ROUTE_SEGMENT_DELETE);
    expect_status("GET", "/v1/segments/", ROUTE_NOT_FOUND, "");
    expect_status("GET", "/v1/segments/" UUID_LC "/export/x", ROUTE_NOT_FOUND, "");
}
END_TEST

START_TEST(test_uuid_lowercased)
{
    expect_match("GET", "/v1/customers/" UUID_UC, ROUTE_CUSTOMER_GET, UUID_LC);
    expect_match("PATCH", "/v1/customers/" UUID_UC "/traits", ROUTE_CUSTOMER_TRAITS, UUID_LC);
    expect_match("GET", "/v1/customers/123e4567-E89B-42d3-A456-426614174abc/interactions",
                 ROUTE_CUSTOMER_TIMELINE, UUID_LC);
}
END_TEST

START_TEST(test_bad_uuid)
{
    expect_status("GET", "/v1/customers/not-a-uuid", ROUTE_BAD_UUID, "");
    ck_assert_int_eq(m.route, ROUTE_CUSTOMER_GET);
    ck_assert_str_eq(m.id, "");
    expect_status("PATCH", "/v1/customers/not-a-uuid/traits", ROUTE_BAD_UUID, "");
    ck_assert_int_eq(m.route, ROUTE_CUSTOMER_TRAITS);
    expect_status("GET", "/v1/customers/xyz/interactions", ROUTE_BAD_UUID, "");
    ck_assert_int_eq(m.route, ROUTE_CUSTOMER_TIMELINE);
    /* one character short / long, and braces */
    expect_status("GET", "/v1/customers/123e4567-e89b-42d3-a456-426614174ab", ROUTE_BAD_UUID, "");
    expect_status("GET", "/v1/customers/123e4567-e89b-42d3-a456-426614174abcd", ROUTE_BAD_UUID,
                  "");
    expect_status("GET", "/v1/customers/{" UUID_LC "}", ROUTE_BAD_UUID, "");
    expect_status("GET", "/v1/customers/123e4567e89b42d3a456426614174abc", ROUTE_BAD_UUID, "");
    /* far longer than the id buffer */
    expect_status("GET",
                  "/v1/customers/" UUID_LC UUID_LC UUID_LC UUID_LC "/interactions",
                  ROUTE_BAD_UUID, "");
    ck_assert_int_eq(m.route, ROUTE_CUSTOMER_TIMELINE);
    expect_status("GET", "/v1/customers/" UUID_LC ":resolve", ROUTE_BAD_UUID, "");
}
END_TEST

START_TEST(test_method_not_allowed)
{
    expect_status("DELETE", "/v1/interactions", ROUTE_METHOD_NOT_ALLOWED, "POST");
    expect_status("GET", "/v1/interactions", ROUTE_METHOD_NOT_ALLOWED, "POST");
    expect_status("GET", "/v1/customers:resolve", ROUTE_METHOD_NOT_ALLOWED, "POST");
    expect_status("PUT", "/v1/interactions:batch", ROUTE_METHOD_NOT_ALLOWED, "POST");
    expect_status("POST", "/v1/customers", ROUTE_METHOD_NOT_ALLOWED, "GET");
    expect_status("POST", "/health", ROUTE_METHOD_NOT_ALLOWED, "GET");
    expect_status("HEAD", "/ready", ROUTE_METHOD_NOT_ALLOWED, "GET");
    expect_status("PUT", "/v1/customers/" UUID_LC, ROUTE_METHOD_NOT_ALLOWED, "GET, DELETE");
    expect_status("PATCH", "/v1/customers/" UUID_LC, ROUTE_METHOD_NOT_ALLOWED, "GET, DELETE");
    expect_status("PUT", "/v1/customers/" UUID_LC "/preferences", ROUTE_METHOD_NOT_ALLOWED,
                  "GET, PATCH");
    expect_status("DELETE", "/v1/customers/" UUID_LC "/consents", ROUTE_METHOD_NOT_ALLOWED,
                  "GET, POST");
    expect_status("POST", "/v1/moments", ROUTE_METHOD_NOT_ALLOWED, "GET");
    expect_status("GET", "/v1/customers/" UUID_LC "/traits", ROUTE_METHOD_NOT_ALLOWED, "PATCH");
    expect_status("POST", "/v1/customers/" UUID_LC "/interactions", ROUTE_METHOD_NOT_ALLOWED,
                  "GET");
    /* methods are case-sensitive */
    expect_status("get", "/health", ROUTE_METHOD_NOT_ALLOWED, "GET");
    /* the method is checked before the id */
    expect_status("PUT", "/v1/customers/not-a-uuid", ROUTE_METHOD_NOT_ALLOWED, "GET, DELETE");
}
END_TEST

START_TEST(test_not_found)
{
    expect_status("GET", "/nope", ROUTE_NOT_FOUND, "");
    ck_assert_str_eq(m.id, "");
    expect_status("GET", "/", ROUTE_NOT_FOUND, "");
    expect_status("GET", "", ROUTE_NOT_FOUND, "");
    expect_status("GET", "/HEALTH", ROUTE_NOT_FOUND, "");
    expect_status("GET", "/health/", ROUTE_NOT_FOUND, "");
    expect_status("GET", "/healthz", ROUTE_NOT_FOUND, "");
    expect_status("GET", "/v1", ROUTE_NOT_FOUND, "");
    expect_status("GET", "/v1/customers/", ROUTE_NOT_FOUND, "");
    expect_status("GET", "/v1/customers//", ROUTE_NOT_FOUND, "");
    expect_status("PATCH", "/v1/customers//traits", ROUTE_NOT_FOUND, "");
    expect_status("GET", "/v1/customers/" UUID_LC "/", ROUTE_NOT_FOUND, "");
    expect_status("GET", "/v1/customers/" UUID_LC "/interactions/extra", ROUTE_NOT_FOUND, "");
    expect_status("GET", "/v1/customers/" UUID_LC "/interactions/", ROUTE_NOT_FOUND, "");
    expect_status("PATCH", "/v1/customers/" UUID_LC "/traits/x", ROUTE_NOT_FOUND, "");
    expect_status("GET", "/v1/customers/" UUID_LC "/unknown", ROUTE_NOT_FOUND, "");
    expect_status("POST", "/v1/interactions/", ROUTE_NOT_FOUND, "");
    expect_status("POST", "/v1/interactions:batchx", ROUTE_NOT_FOUND, "");
    expect_status("POST", "/v1/customers:merge", ROUTE_NOT_FOUND, "");
    expect_status("POST", "/v2/interactions", ROUTE_NOT_FOUND, "");
    expect_status("DELETE", "/nope", ROUTE_NOT_FOUND, "");
}
END_TEST

START_TEST(test_replica_routes)
{
    int replica = 0;
    ck_assert(route_reads_from_replica(ROUTE_CUSTOMER_GET));
    ck_assert(route_reads_from_replica(ROUTE_CUSTOMER_LOOKUP));
    ck_assert(route_reads_from_replica(ROUTE_CUSTOMER_TIMELINE));
    ck_assert(route_reads_from_replica(ROUTE_SEGMENT_CUSTOMERS));
    ck_assert(route_reads_from_replica(ROUTE_SEGMENT_EXPORT));
    ck_assert(route_reads_from_replica(ROUTE_KPIS));
    /* writes, and reads whose answer must include the caller's own writes */
    ck_assert(!route_reads_from_replica(ROUTE_INTERACTION_CREATE));
    ck_assert(!route_reads_from_replica(ROUTE_CUSTOMER_RESOLVE));
    ck_assert(!route_reads_from_replica(ROUTE_SEGMENT_PREVIEW));
    ck_assert(!route_reads_from_replica(ROUTE_CONTACT_DECISION));
    ck_assert(!route_reads_from_replica(ROUTE_CUSTOMER_SUMMARY));
    ck_assert(!route_reads_from_replica(ROUTE_CUSTOMER_EXPORT));
    ck_assert(!route_reads_from_replica(ROUTE_READY));
    for (int r = 0; r < ROUTE_COUNT; r++)
        replica += route_reads_from_replica((enum route)r);
    ck_assert(route_reads_from_replica(ROUTE_VALUE_RUNS));
    ck_assert_int_eq(replica, 7);
}
END_TEST

START_TEST(test_long_routes)
{
    int long_running = 0;
    /* set-based work and whole-customer moves run on a thread of their own */
    ck_assert(route_runs_long(ROUTE_SEGMENT_PREVIEW));
    ck_assert(route_runs_long(ROUTE_SEGMENT_EXPORT));
    ck_assert(route_runs_long(ROUTE_KPIS));
    ck_assert(route_runs_long(ROUTE_VALUE_RECOMPUTE));
    ck_assert(route_runs_long(ROUTE_MERGE_CREATE));
    ck_assert(route_runs_long(ROUTE_CUSTOMER_ERASE));
    ck_assert(route_runs_long(ROUTE_MOMENTS_RUN));
    ck_assert(route_runs_long(ROUTE_IDENTIFIER_DETACH)); /* moves interactions */
    /* the call-centre and ingest paths stay on the worker threads */
    ck_assert(!route_runs_long(ROUTE_CUSTOMER_GET));
    ck_assert(!route_runs_long(ROUTE_CUSTOMER_LOOKUP));
    ck_assert(!route_runs_long(ROUTE_INTERACTION_CREATE));
    ck_assert(!route_runs_long(ROUTE_INTERACTION_BATCH));
    ck_assert(!route_runs_long(ROUTE_CONTACT_DECISION));
    ck_assert(!route_runs_long(ROUTE_HEALTH));
    for (int r = 0; r < ROUTE_COUNT; r++)
        long_running += route_runs_long((enum route)r);
    ck_assert(route_runs_long(ROUTE_WEBHOOK_CREATE)); /* they resolve the URL's host */
    ck_assert(route_runs_long(ROUTE_WEBHOOK_UPDATE));
    ck_assert(!route_runs_long(ROUTE_EVENTS));
    ck_assert(route_runs_long(ROUTE_SEGMENT_UPDATE)); /* recomputes the members */
    ck_assert(!route_runs_long(ROUTE_CUSTOMER_SEGMENTS));
    ck_assert(route_runs_long(ROUTE_SURVIVORSHIP_PUT)); /* re-resolves every customer's traits */
    ck_assert(route_runs_long(ROUTE_IDENTIFIER_DETACH)); /* moves interactions */
    ck_assert(route_runs_long(ROUTE_SEGMENT_LOOKALIKES)); /* reads every customer, may fit */
    ck_assert_int_eq(long_running, 19);
}
END_TEST

START_TEST(test_route_name)
{
    static const struct {
        enum route r;
        const char *name;
    } t[] = {
        {ROUTE_HEALTH, "health"},
        {ROUTE_READY, "ready"},
        {ROUTE_CUSTOMER_RESOLVE, "customer_resolve"},
        {ROUTE_CUSTOMER_LOOKUP, "customer_lookup"},
        {ROUTE_CUSTOMER_GET, "customer_get"},
        {ROUTE_CUSTOMER_TRAITS, "customer_traits"},
        {ROUTE_CUSTOMER_TIMELINE, "customer_timeline"},
        {ROUTE_INTERACTION_CREATE, "interaction_create"},
        {ROUTE_INTERACTION_BATCH, "interaction_batch"},
        {ROUTE_SEGMENT_CREATE, "segment_create"},
        {ROUTE_SEGMENT_LIST, "segment_list"},
        {ROUTE_SEGMENT_PREVIEW, "segment_preview"},
        {ROUTE_SEGMENT_GET, "segment_get"},
        {ROUTE_SEGMENT_DELETE, "segment_delete"},
        {ROUTE_SEGMENT_CUSTOMERS, "segment_customers"},
        {ROUTE_SEGMENT_EXPORT, "segment_export"},
        {ROUTE_VALUE_RECOMPUTE, "value_recompute"},
        {ROUTE_KPIS, "kpis"},
        {ROUTE_PREFERENCES_GET, "preferences_get"},
        {ROUTE_PREFERENCES_PATCH, "preferences_patch"},
        {ROUTE_CONSENTS_LIST, "consents_list"},
        {ROUTE_CONSENT_CREATE, "consent_create"},
        {ROUTE_CONTACT_DECISION, "contact_decision"},
        {ROUTE_MOMENTS, "moments"},
        {ROUTE_MOMENTS_RUN, "moments_run"},
        {ROUTE_CUSTOMER_EXPORT, "customer_export"},
        {ROUTE_CUSTOMER_ERASE, "customer_erase"},
        {ROUTE_PARTNER_CUSTOMER, "partner_customer"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        ck_assert_str_eq(route_name(t[i].r), t[i].name);
    for (int r = 0; r < ROUTE_COUNT; r++) /* every route, including newer ones, has a name */
        ck_assert_str_ne(route_name((enum route)r), "unknown");
    ck_assert_str_eq(route_name(ROUTE_COUNT), "unknown");
}
END_TEST

START_TEST(test_query_params)
{
    ck_assert_int_eq(route_query_param_index(ROUTE_CUSTOMER_TIMELINE, "limit", 5), 0);
    ck_assert_int_eq(route_query_param_index(ROUTE_CUSTOMER_TIMELINE, "until", 5), 5);
    ck_assert_int_eq(route_query_param_index(ROUTE_CUSTOMER_TIMELINE, "type", 4), 3);
    /* a prefix, an extension, a key cut at its length: none matches */
    ck_assert_int_eq(route_query_param_index(ROUTE_CUSTOMER_TIMELINE, "typ", 3), -1);
    ck_assert_int_eq(route_query_param_index(ROUTE_CUSTOMER_TIMELINE, "types", 5), -1);
    ck_assert_int_eq(route_query_param_index(ROUTE_CUSTOMER_TIMELINE, "limitx", 5), 0);
    ck_assert_int_eq(route_query_param_index(ROUTE_CUSTOMER_TIMELINE, "", 0), -1);
    ck_assert_int_eq(route_query_param_index(ROUTE_MOMENTS, "days", 4), 6);
    ck_assert_int_eq(route_query_param_index(ROUTE_CUSTOMER_GET, "limit", 5), -1);
    ck_assert_str_eq(route_query_params(ROUTE_CUSTOMER_GET), "");
    ck_assert_str_eq(route_query_params(ROUTE_KPIS), "from to segment_id");
    ck_assert_str_eq(route_query_params(ROUTE_COUNT), "");
    for (int r = 0; r < ROUTE_COUNT; r++) { /* the HTTP layer tracks repeats in 32 bits */
        const char *p = route_query_params((enum route)r);
        int words = 0;
        for (; *p; p++)
            words += p[0] != ' ' && (p[1] == ' ' || p[1] == '\0');
        ck_assert_int_le(words, 32);
    }
}
END_TEST

static void expect_file(const char *path, enum route r, const char *file)
{
    route("GET", path);
    ck_assert_msg(m.status == ROUTE_MATCHED && m.route == r, "%s: status %d route %d", path,
                  m.status, m.route);
    ck_assert_str_eq(m.file, file);
}

/* The console: "/console/" and "/console/{file}", where {file} is a safe
 * relative name or nothing (404), never a way out of the directory. */
START_TEST(test_console_routes)
{
    expect_file("/console/", ROUTE_CONSOLE_INDEX, "");
    expect_file("/console/app.js", ROUTE_CONSOLE_FILE, "app.js");
    expect_file("/console/vendor/uPlot.iife.min.js", ROUTE_CONSOLE_FILE,
                "vendor/uPlot.iife.min.js");
    expect_file("/console/a-b_c.1.css", ROUTE_CONSOLE_FILE, "a-b_c.1.css");
    expect_match("GET", "/v1/me", ROUTE_ME, "");
    expect_status("POST", "/console/app.js", ROUTE_METHOD_NOT_ALLOWED, "GET");
    expect_status("POST", "/console/", ROUTE_METHOD_NOT_ALLOWED, "GET");
    static const char *const bad[] = {
        "/console",  "/console//app.js", "/console/../x",   "/console/vendor/../../x",
        "/console/.hidden", "/console/vendor/", "/console/a b", "/console/a%2e",
        "/console/a\\b", "/console/app.js/", "/console/%2e%2e/x", "/console/a?b",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_status("GET", bad[i], ROUTE_NOT_FOUND, NULL);
    /* ROUTE_FILE_MAX bytes match, one more does not */
    char path[16 + ROUTE_FILE_MAX + 2] = "/console/";
    memset(path + 9, 'a', ROUTE_FILE_MAX);
    path[9 + ROUTE_FILE_MAX] = '\0';
    route("GET", path);
    ck_assert_int_eq(m.status, ROUTE_MATCHED);
    ck_assert_uint_eq(strlen(m.file), ROUTE_FILE_MAX);
    strcat(path, "a");
    expect_status("GET", path, ROUTE_NOT_FOUND, NULL);
    ck_assert(route_is_public(ROUTE_CONSOLE_INDEX) && route_is_public(ROUTE_CONSOLE_FILE));
    ck_assert(!route_is_public(ROUTE_ME));
    for (int role = 0; role < ROLE_COUNT; role++)
        ck_assert(role_allows((enum role)role, ROUTE_ME));
}
END_TEST

START_TEST(test_every_route_has_roles_and_flags_from_the_table)
{
    unsigned int fo = 1u << ROLE_FRONT_OFFICE, cc = 1u << ROLE_CALL_CENTER,
                 mk = 1u << ROLE_MARKETING, pa = 1u << ROLE_PARTNER, ad = 1u << ROLE_ADMIN;
    for (int r = 0; r < ROUTE_COUNT; r++) {
        enum route route = (enum route)r;
        if (route_is_public(route)) {
            ck_assert_msg(route_roles(route) == 0, "%s: public with roles", route_name(route));
            for (int role = 0; role < ROLE_COUNT; role++)
                ck_assert(role_allows((enum role)role, route));
            continue;
        }
        /* a row without roles (or one that forgets admin) fails here */
        ck_assert_msg(route_roles(route) & ad, "%s: admin not among its roles",
                      route_name(route));
        ck_assert(role_allows(ROLE_ADMIN, route));
        ck_assert_msg((route_roles(route) & ~((1u << ROLE_COUNT) - 1)) == 0, "%s: unknown role",
                      route_name(route));
    }
    /* the permissions as documented (openapi.yaml, "Roles") */
    ck_assert_uint_eq(route_roles(ROUTE_CUSTOMER_RESOLVE), fo | cc | pa | ad);
    ck_assert_uint_eq(route_roles(ROUTE_INTERACTION_CREATE), fo | cc | pa | ad);
    ck_assert_uint_eq(route_roles(ROUTE_INTERACTION_BATCH), fo | cc | pa | ad);
    ck_assert_uint_eq(route_roles(ROUTE_CUSTOMER_TRAITS), fo | cc | ad);
    ck_assert_uint_eq(route_roles(ROUTE_CUSTOMER_GET), cc | ad);
    ck_assert_uint_eq(route_roles(ROUTE_CUSTOMER_LOOKUP), cc | ad);
    ck_assert_uint_eq(route_roles(ROUTE_CUSTOMER_TIMELINE), cc | ad);
    ck_assert_uint_eq(route_roles(ROUTE_CUSTOMER_MERGES), cc | ad);
    ck_assert_uint_eq(route_roles(ROUTE_SEGMENT_EXPORT), mk | ad);
    ck_assert_uint_eq(route_roles(ROUTE_KPIS), mk | ad);
    ck_assert_uint_eq(route_roles(ROUTE_VALUE_RECOMPUTE), mk | ad);
    ck_assert_uint_eq(route_roles(ROUTE_PREFERENCES_PATCH), fo | cc | ad);
    ck_assert_uint_eq(route_roles(ROUTE_CONSENT_CREATE), fo | cc | ad);
    ck_assert_uint_eq(route_roles(ROUTE_CONTACT_DECISION), fo | cc | mk | ad);
    ck_assert_uint_eq(route_roles(ROUTE_MOMENTS), mk | ad);
    ck_assert_uint_eq(route_roles(ROUTE_MOMENTS_RUN), ad);
    ck_assert_uint_eq(route_roles(ROUTE_KEY_CREATE), ad);
    ck_assert_uint_eq(route_roles(ROUTE_MERGE_CREATE), ad);
    ck_assert_uint_eq(route_roles(ROUTE_CUSTOMER_EXPORT), ad);
    ck_assert_uint_eq(route_roles(ROUTE_CUSTOMER_ERASE), ad);
    ck_assert_uint_eq(route_roles(ROUTE_PARTNER_CUSTOMER), pa | ad);
    ck_assert(!role_allows(ROLE_PARTNER, ROUTE_CUSTOMER_GET));
    ck_assert(!role_allows(ROLE_MARKETING, ROUTE_CUSTOMER_GET));
    ck_assert(role_allows(ROLE_MARKETING, ROUTE_HEALTH));
    ck_assert(!role_allows(ROLE_COUNT, ROUTE_CUSTOMER_GET));
    ck_assert(route_is_public(ROUTE_HEALTH) && route_is_public(ROUTE_READY) &&
              route_is_public(ROUTE_METRICS));
    ck_assert_uint_eq(route_flags(ROUTE_KPIS),
                      ROUTE_FLAG_REPLICA_READ | ROUTE_FLAG_LONG);
    ck_assert_uint_eq(route_flags(ROUTE_COUNT), 0);
}
END_TEST

static Suite *router_suite(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("routes");
    tcase_add_test(tc, test_all_routes);
    tcase_add_test(tc, test_segment_and_value_routes);
    tcase_add_test(tc, test_activation_routes);
    tcase_add_test(tc, test_uuid_lowercased);
    tcase_add_test(tc, test_bad_uuid);
    tcase_add_test(tc, test_method_not_allowed);
    tcase_add_test(tc, test_not_found);
    tcase_add_test(tc, test_route_name);
    tcase_add_test(tc, test_replica_routes);
    tcase_add_test(tc, test_long_routes);
    tcase_add_test(tc, test_query_params);
    tcase_add_test(tc, test_console_routes);
    tcase_add_test(tc, test_every_route_has_roles_and_flags_from_the_table);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(router_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
