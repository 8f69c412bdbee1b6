/*
 * router: the route table. A pattern is a path whose "{id}" segment matches
 * any single non-empty segment; the segment is then checked to be a UUID,
 * so "/v1/customers/xyz" is a 400 (bad id), not a 404 (no such route). A
 * "{file}" ending a pattern matches the rest of the path when it is a safe
 * relative file name (the console's static files), else nothing (404).
 */
#include "router.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* One row per route, indexed by its id: everything the server knows about a
 * route but its handler (dispatch.c) and its contract (openapi.yaml).
 * roles: the roles that may call it (admin is listed like the others, so a
 * row without roles is visible; a unit test requires roles on every
 * non-public row). flags: PUBLIC (no key), REPLICA_READ (its reads may go to
 * a streaming replica: all GETs, none writes), LONG (its work grows with the
 * data set or moves a whole customer: the HTTP layer runs it on the
 * long-route threads). query: the query parameters it reads, space-separated
 * (NULL: none); any other is refused by the HTTP layer. */
struct route_def {
    const char *method;
    const char *pattern;
    const char *name;
    unsigned int roles; /* bits 1 << enum role */
    unsigned int flags; /* ROUTE_FLAG_* */
    const char *query;
};

#define FO (1u << ROLE_FRONT_OFFICE)
#define CC (1u << ROLE_CALL_CENTER)
#define MK (1u << ROLE_MARKETING)
#define PA (1u << ROLE_PARTNER)
#define AD (1u << ROLE_ADMIN)
#define PUBLIC ROUTE_FLAG_PUBLIC
#define REPLICA_READ ROUTE_FLAG_REPLICA_READ
#define LONG ROUTE_FLAG_LONG

static const struct route_def ROUTES[ROUTE_COUNT] = {
    [ROUTE_HEALTH] = {"GET", "/health", "health",
        0, PUBLIC, NULL},
    [ROUTE_READY] = {"GET", "/ready", "ready",
        0, PUBLIC, NULL},
    [ROUTE_METRICS] = {"GET", "/metrics", "metrics",
        0, PUBLIC, NULL},
    [ROUTE_CUSTOMER_RESOLVE] = {"POST", "/v1/customers:resolve", "customer_resolve",
        FO | CC | PA | AD, 0, NULL},
    [ROUTE_CUSTOMER_LOOKUP] = {"GET", "/v1/customers", "customer_lookup",
        CC | AD, REPLICA_READ, "email phone device loyalty_card kind value namespace"},
    [ROUTE_CUSTOMER_GET] = {"GET", "/v1/customers/{id}", "customer_get",
        CC | AD, REPLICA_READ, NULL},
    [ROUTE_CUSTOMER_TRAITS] = {"PATCH", "/v1/customers/{id}/traits", "customer_traits",
        FO | CC | AD, 0, NULL},
    [ROUTE_CUSTOMER_TIMELINE] = {"GET", "/v1/customers/{id}/interactions", "customer_timeline",
        CC | AD, REPLICA_READ, "limit cursor channel type since until"},
    [ROUTE_INTERACTION_CREATE] = {"POST", "/v1/interactions", "interaction_create",
        FO | CC | PA | AD, 0, NULL},
    [ROUTE_INTERACTION_BATCH] = {"POST", "/v1/interactions:batch", "interaction_batch",
        FO | CC | PA | AD, 0, NULL},
    [ROUTE_SEGMENT_CREATE] = {"POST", "/v1/segments", "segment_create",
        MK | AD, LONG, NULL},
    [ROUTE_SEGMENT_LIST] = {"GET", "/v1/segments", "segment_list",
        MK | AD, 0, NULL},
    [ROUTE_SEGMENT_PREVIEW] = {"POST", "/v1/segments:preview", "segment_preview",
        MK | AD, LONG, NULL},
    [ROUTE_SEGMENT_GET] = {"GET", "/v1/segments/{id}", "segment_get",
        MK | AD, 0, NULL},
    [ROUTE_SEGMENT_DELETE] = {"DELETE", "/v1/segments/{id}", "segment_delete",
        MK | AD, 0, NULL},
    /* recomputes the members over every customer: LONG like create */
    [ROUTE_SEGMENT_UPDATE] = {"PATCH", "/v1/segments/{id}", "segment_update",
        MK | AD, LONG, NULL},
    [ROUTE_SEGMENT_CUSTOMERS] = {"GET", "/v1/segments/{id}/customers", "segment_customers",
        MK | AD, REPLICA_READ | LONG, "limit cursor count sort fields purpose channel at"},
    [ROUTE_SEGMENT_EXPORT] = {"GET", "/v1/segments/{id}/export", "segment_export",
        MK | AD, REPLICA_READ | LONG, "fields purpose channel at sort"},
    [ROUTE_VALUE_RECOMPUTE] = {"POST", "/v1/value:recompute", "value_recompute",
        MK | AD, LONG, NULL},
    [ROUTE_VALUE_RUNS] = {"GET", "/v1/value/runs", "value_runs",
        MK | AD, REPLICA_READ, "limit cursor"},
    [ROUTE_VALUE_SETTINGS_GET] = {"GET", "/v1/settings/value", "value_settings_get",
        MK | AD, 0, NULL},
    [ROUTE_VALUE_SETTINGS_PATCH] = {"PATCH", "/v1/settings/value", "value_settings_patch",
        AD, 0, NULL},
    [ROUTE_KPIS] = {"GET", "/v1/kpis", "kpis",
        MK | AD, REPLICA_READ | LONG, "from to segment_id"},
    [ROUTE_KEY_CREATE] = {"POST", "/v1/admin/keys", "key_create",
        AD, 0, NULL},
    [ROUTE_KEY_LIST] = {"GET", "/v1/admin/keys", "key_list",
        AD, 0, NULL},
    [ROUTE_KEY_REVOKE] = {"DELETE", "/v1/admin/keys/{id}", "key_revoke",
        AD, 0, NULL},
    [ROUTE_CUSTOMER_MERGES] = {"GET", "/v1/customers/{id}/merges", "customer_merges",
        CC | AD, 0, NULL},
    /* segment memberships are personal data like the profile: audited */
    [ROUTE_CUSTOMER_SEGMENTS] = {"GET", "/v1/customers/{id}/segments", "customer_segments",
        CC | MK | AD, 0, "limit"},
    [ROUTE_MERGE_CREATE] = {"POST", "/v1/admin/merges", "merge_create",
        AD, LONG, NULL},
    [ROUTE_UNMERGE] = {"POST", "/v1/admin/unmerge", "unmerge",
        AD, LONG, NULL},
    [ROUTE_BLOCKED_LIST] = {"GET", "/v1/admin/blocked-identifiers", "blocked_list",
        AD, 0, NULL},
    [ROUTE_BLOCKED_ADD] = {"POST", "/v1/admin/blocked-identifiers", "blocked_add",
        AD, 0, NULL},
    [ROUTE_BLOCKED_REMOVE] = {"DELETE", "/v1/admin/blocked-identifiers", "blocked_remove",
        AD, 0, "kind value pattern"},
    [ROUTE_LIMITS_GET] = {"GET", "/v1/admin/identifier-limits", "limits_get",
        AD, 0, NULL},
    [ROUTE_LIMITS_SET] = {"PUT", "/v1/admin/identifier-limits", "limits_set",
        AD, 0, NULL},
    [ROUTE_CONFLICTS_LIST] = {"GET", "/v1/admin/identity-conflicts", "conflicts_list",
        AD, LONG, "limit"},
    [ROUTE_PREFERENCES_GET] = {"GET", "/v1/customers/{id}/preferences", "preferences_get",
        FO | CC | AD, 0, NULL},
    [ROUTE_PREFERENCES_PATCH] = {"PATCH", "/v1/customers/{id}/preferences", "preferences_patch",
        FO | CC | AD, 0, NULL},
    [ROUTE_CONSENTS_LIST] = {"GET", "/v1/customers/{id}/consents", "consents_list",
        FO | CC | AD, 0, NULL},
    [ROUTE_CONSENT_CREATE] = {"POST", "/v1/customers/{id}/consents", "consent_create",
        FO | CC | AD, 0, NULL},
    [ROUTE_CONTACT_DECISION] = {"GET", "/v1/customers/{id}/contact-decision", "contact_decision",
        FO | CC | MK | AD, 0, "channel purpose at"},
    [ROUTE_MOMENTS] = {"GET", "/v1/moments", "moments",
        MK | AD, LONG, "kind at cursor segment_id purpose channel days limit"},
    /* the daily moments run by hand (operations, tests): it scans customers */
    [ROUTE_MOMENTS_RUN] = {"POST", "/v1/moments:run", "moments_run",
        AD, LONG, NULL},
    [ROUTE_CUSTOMER_EXPORT] = {"GET", "/v1/customers/{id}/export", "customer_export",
        AD, LONG, NULL},
    [ROUTE_CUSTOMER_ERASE] = {"DELETE", "/v1/customers/{id}", "customer_erase",
        AD, LONG, NULL},
    [ROUTE_PARTNER_CUSTOMER] = {"GET", "/v1/partners/customers/{id}", "partner_customer",
        PA | AD, 0, NULL},
    /* Activation (docs/activation.md): the feed carries personal data of
     * every customer, so marketing and admin only (no partner key). */
    [ROUTE_EVENTS] = {"GET", "/v1/events", "events",
        MK | AD, 0, "after types limit"},
    /* create and change resolve the URL's host (DNS may take seconds): LONG */
    [ROUTE_WEBHOOK_CREATE] = {"POST", "/v1/webhooks", "webhook_create",
        AD, LONG, NULL},
    [ROUTE_WEBHOOK_LIST] = {"GET", "/v1/webhooks", "webhook_list",
        AD, 0, NULL},
    [ROUTE_WEBHOOK_GET] = {"GET", "/v1/webhooks/{id}", "webhook_get",
        AD, 0, NULL},
    [ROUTE_WEBHOOK_UPDATE] = {"PATCH", "/v1/webhooks/{id}", "webhook_update",
        AD, LONG, NULL},
    [ROUTE_WEBHOOK_DELETE] = {"DELETE", "/v1/webhooks/{id}", "webhook_delete",
        AD, 0, NULL},
    [ROUTE_WEBHOOK_DELIVERIES] = {"GET", "/v1/webhooks/{id}/deliveries", "webhook_deliveries",
        AD, 0, "status limit"},
    [ROUTE_WEBHOOK_REPLAY] = {"POST", "/v1/webhooks/{id}/deliveries:replay", "webhook_replay",
        AD, 0, NULL},
    /* Cases (docs/cases.md): the front office opens them, the call centre
     * works them; marketing and partners see none. */
    [ROUTE_CASE_CREATE] = {"POST", "/v1/customers/{id}/cases", "case_create",
        FO | CC | AD, 0, NULL},
    [ROUTE_CASE_LIST] = {"GET", "/v1/customers/{id}/cases", "case_list",
        CC | AD, 0, "status limit"},
    [ROUTE_CASE_GET] = {"GET", "/v1/cases/{id}", "case_get",
        CC | AD, 0, NULL},
    [ROUTE_CASE_PATCH] = {"PATCH", "/v1/cases/{id}", "case_patch",
        CC | AD, 0, NULL},
    /* Who the caller's key is (the console learns its role from it). */
    [ROUTE_ME] = {"GET", "/v1/me", "me",
        FO | CC | MK | PA | AD, 0, NULL},
    /* The console's static files (no data in them: public); api/console.c */
    [ROUTE_CONSOLE_INDEX] = {"GET", "/console/", "console",
        0, PUBLIC, NULL},
    [ROUTE_CONSOLE_FILE] = {"GET", "/console/{file}", "console_file",
        0, PUBLIC, NULL},
    /* identity rules (docs/identity.md): a detach moves a customer's data */
    [ROUTE_IDENTIFIER_DETACH] = {"POST", "/v1/customers/{id}/identifiers:detach",
        "identifier_detach", AD, LONG, NULL},
    [ROUTE_NEVER_MERGE_LIST] = {"GET", "/v1/admin/never-merge", "never_merge_list",
        AD, 0, "customer_id"},
    [ROUTE_NEVER_MERGE_ADD] = {"POST", "/v1/admin/never-merge", "never_merge_add",
        AD, 0, NULL},
    [ROUTE_NEVER_MERGE_REMOVE] = {"DELETE", "/v1/admin/never-merge", "never_merge_remove",
        AD, 0, "customer_id other_id"},
    /* The agent's summary and next best action (docs/summary.md): personal
     * data read like the profile (same roles, audited); not from a replica,
     * like the contact decision it includes: the agent's own writes show. */
    [ROUTE_CUSTOMER_SUMMARY] = {"GET", "/v1/customers/{id}/summary", "customer_summary",
        CC | AD, 0, NULL},
    [ROUTE_NBA_SETTINGS_GET] = {"GET", "/v1/settings/next-best-action", "nba_settings_get",
        CC | MK | AD, 0, NULL},
    [ROUTE_NBA_SETTINGS_PUT] = {"PUT", "/v1/settings/next-best-action", "nba_settings_put",
        AD, 0, NULL},
    /* the moment kinds, personal dates declared from traits (docs/customize.md) */
    [ROUTE_MOMENT_SETTINGS_GET] = {"GET", "/v1/settings/moments", "moment_settings_get",
        MK | AD, 0, NULL},
    [ROUTE_MOMENT_SETTINGS_PUT] = {"PUT", "/v1/settings/moments", "moment_settings_put",
        AD, 0, NULL},
    /* dated currency rates to the base currency (docs/value.md, "Currencies") */
    [ROUTE_FX_RATES_GET] = {"GET", "/v1/settings/fx-rates", "fx_rates_get",
        MK | AD, 0, NULL},
    [ROUTE_FX_RATES_PUT] = {"PUT", "/v1/settings/fx-rates", "fx_rates_put",
        AD, 0, NULL},
    /* Trait survivorship rules (docs/identity.md); a PUT re-resolves the
     * traits whose rule changed, on every customer: long. */
    [ROUTE_SURVIVORSHIP_GET] = {"GET", "/v1/settings/survivorship", "survivorship_get",
        AD, 0, NULL},
    [ROUTE_SURVIVORSHIP_PUT] = {"PUT", "/v1/settings/survivorship", "survivorship_put",
        AD, LONG, NULL},
    /* reads every live customer's features and may fit a model: LONG; it
     * keeps the fit, so not a replica read (docs/lookalikes.md) */
    [ROUTE_SEGMENT_LOOKALIKES] = {"GET", "/v1/segments/{id}/lookalikes", "segment_lookalikes",
        MK | AD, LONG, "limit"},
};

#define ROUTE_TABLE_SIZE ((size_t)ROUTE_COUNT)

/* True when s is a relative file name of at most ROUTE_FILE_MAX bytes:
 * '/'-separated segments of [A-Za-z0-9._-], none empty or starting with '.'. */
static bool file_name_ok(const char *s)
{
    size_t n = strlen(s);
    bool segment_start = true;
    if (n == 0 || n > ROUTE_FILE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '/') {
            if (segment_start)
                return false; /* an empty segment */
            segment_start = true;
            continue;
        }
        if (segment_start && c == '.')
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
        segment_start = false;
    }
    return !segment_start; /* no trailing '/' */
}

/* Match path against pattern; on success copies the {id} segment (raw) to
 * id, or the {file} rest to out->file. */
static bool path_matches(const char *pattern, const char *path, char *id, size_t idcap,
                         bool *has_id, struct route_match *out)
{
    const char *p = pattern, *s = path;
    *has_id = false;
    while (*p && *s) {
        if (strcmp(p, "{file}") == 0) {
            if (!file_name_ok(s))
                return false;
            snprintf(out->file, sizeof(out->file), "%s", s);
            return true;
        }
        if (strncmp(p, "{id}", 4) == 0) {
            const char *end = strchr(s, '/');
            size_t n = end ? (size_t)(end - s) : strlen(s);
            if (n == 0)
                return false;
            snprintf(id, idcap, "%.*s", (int)(n < idcap ? n : idcap - 1), s);
            if (n >= idcap)
                id[0] = '\0'; /* too long to be a UUID */
            *has_id = true;
            p += 4;
            s += n;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    return *p == '\0' && *s == '\0';
}

void route_request(const char *method, const char *path, struct route_match *out)
{
    bool path_known = false;
    char raw_id[64];
    memset(out, 0, sizeof(*out));
    out->status = ROUTE_NOT_FOUND;
    for (size_t i = 0; i < ROUTE_TABLE_SIZE; i++) {
        bool has_id;
        if (!path_matches(ROUTES[i].pattern, path, raw_id, sizeof(raw_id), &has_id, out))
            continue;
        if (strcmp(ROUTES[i].method, method) != 0) {
            size_t len = strlen(out->allow);
            snprintf(out->allow + len, sizeof(out->allow) - len, "%s%s", len ? ", " : "",
                     ROUTES[i].method);
            path_known = true;
            continue;
        }
        out->route = (enum route)i;
        out->allow[0] = '\0'; /* only meaningful for 405 */
        if (has_id && !uuid_canonical(raw_id, out->id)) {
            out->status = ROUTE_BAD_UUID;
            return;
        }
        out->status = ROUTE_MATCHED;
        return;
    }
    if (path_known)
        out->status = ROUTE_METHOD_NOT_ALLOWED;
}

/* The row of a route; NULL for a value outside the table. */
static const struct route_def *route_def_of(enum route route)
{
    return (unsigned int)route < ROUTE_TABLE_SIZE ? &ROUTES[route] : NULL;
}

const char *route_query_params(enum route route)
{
    const struct route_def *d = route_def_of(route);
    return d != NULL && d->query != NULL ? d->query : "";
}

int route_query_param_index(enum route route, const char *key, size_t key_len)
{
    const char *p = route_query_params(route);
    int index = 0;
    while (*p != '\0') {
        size_t n = strcspn(p, " ");
        if (n == key_len && memcmp(p, key, n) == 0)
            return index;
        p += n;
        p += strspn(p, " ");
        index++;
    }
    return -1;
}

const char *route_name(enum route route)
{
    const struct route_def *d = route_def_of(route);
    return d != NULL ? d->name : "unknown";
}

unsigned int route_flags(enum route route)
{
    const struct route_def *d = route_def_of(route);
    return d != NULL ? d->flags : 0;
}

unsigned int route_roles(enum route route)
{
    const struct route_def *d = route_def_of(route);
    return d != NULL ? d->roles : 0;
}

bool route_is_public(enum route route)
{
    return (route_flags(route) & ROUTE_FLAG_PUBLIC) != 0;
}

bool role_allows(enum role role, enum route route)
{
    return route_is_public(route) ||
           ((unsigned int)role < ROLE_COUNT && (route_roles(route) & (1u << role)) != 0);
}

bool route_reads_from_replica(enum route route)
{
    return (route_flags(route) & ROUTE_FLAG_REPLICA_READ) != 0;
}

bool route_runs_long(enum route route)
{
    return (route_flags(route) & ROUTE_FLAG_LONG) != 0;
}
