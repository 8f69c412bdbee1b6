/*
 * router: the route table. A pattern is a path whose "{id}" segment matches
 * any single non-empty segment; the segment is then checked to be a UUID,
 * so "/v1/customers/xyz" is a 400 (bad id), not a 404 (no such route).
 */
#include "router.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct route_def {
    const char *method;
    const char *pattern;
    enum route route;
    const char *name;
    const char *query; /* the query parameters the route reads, space-separated; NULL: none */
};

static const struct route_def ROUTES[] = {
    {"GET", "/health", ROUTE_HEALTH, "health", NULL},
    {"GET", "/ready", ROUTE_READY, "ready", NULL},
    {"GET", "/metrics", ROUTE_METRICS, "metrics", NULL},
    {"POST", "/v1/customers:resolve", ROUTE_CUSTOMER_RESOLVE, "customer_resolve", NULL},
    {"GET", "/v1/customers", ROUTE_CUSTOMER_LOOKUP, "customer_lookup",
     "email phone device loyalty_card kind value namespace"},
    {"GET", "/v1/customers/{id}", ROUTE_CUSTOMER_GET, "customer_get", NULL},
    {"PATCH", "/v1/customers/{id}/traits", ROUTE_CUSTOMER_TRAITS, "customer_traits", NULL},
    {"GET", "/v1/customers/{id}/interactions", ROUTE_CUSTOMER_TIMELINE, "customer_timeline",
     "limit cursor channel type since until"},
    {"POST", "/v1/interactions", ROUTE_INTERACTION_CREATE, "interaction_create", NULL},
    {"POST", "/v1/interactions:batch", ROUTE_INTERACTION_BATCH, "interaction_batch", NULL},
    {"POST", "/v1/segments", ROUTE_SEGMENT_CREATE, "segment_create", NULL},
    {"GET", "/v1/segments", ROUTE_SEGMENT_LIST, "segment_list", NULL},
    {"POST", "/v1/segments:preview", ROUTE_SEGMENT_PREVIEW, "segment_preview", NULL},
    {"GET", "/v1/segments/{id}", ROUTE_SEGMENT_GET, "segment_get", NULL},
    {"DELETE", "/v1/segments/{id}", ROUTE_SEGMENT_DELETE, "segment_delete", NULL},
    {"GET", "/v1/segments/{id}/customers", ROUTE_SEGMENT_CUSTOMERS, "segment_customers",
     "limit cursor count"},
    {"GET", "/v1/segments/{id}/export", ROUTE_SEGMENT_EXPORT, "segment_export", NULL},
    {"POST", "/v1/value:recompute", ROUTE_VALUE_RECOMPUTE, "value_recompute", NULL},
    {"GET", "/v1/kpis", ROUTE_KPIS, "kpis", "from to segment_id"},
    {"POST", "/v1/admin/keys", ROUTE_KEY_CREATE, "key_create", NULL},
    {"GET", "/v1/admin/keys", ROUTE_KEY_LIST, "key_list", NULL},
    {"DELETE", "/v1/admin/keys/{id}", ROUTE_KEY_REVOKE, "key_revoke", NULL},
    {"GET", "/v1/customers/{id}/merges", ROUTE_CUSTOMER_MERGES, "customer_merges", NULL},
    {"POST", "/v1/admin/merges", ROUTE_MERGE_CREATE, "merge_create", NULL},
    {"POST", "/v1/admin/unmerge", ROUTE_UNMERGE, "unmerge", NULL},
    {"GET", "/v1/admin/blocked-identifiers", ROUTE_BLOCKED_LIST, "blocked_list", NULL},
    {"POST", "/v1/admin/blocked-identifiers", ROUTE_BLOCKED_ADD, "blocked_add", NULL},
    {"DELETE", "/v1/admin/blocked-identifiers", ROUTE_BLOCKED_REMOVE, "blocked_remove",
     "kind value"},
    {"GET", "/v1/admin/identifier-limits", ROUTE_LIMITS_GET, "limits_get", NULL},
    {"PUT", "/v1/admin/identifier-limits", ROUTE_LIMITS_SET, "limits_set", NULL},
    {"GET", "/v1/admin/identity-conflicts", ROUTE_CONFLICTS_LIST, "conflicts_list",
     "limit"},
    {"GET", "/v1/customers/{id}/preferences", ROUTE_PREFERENCES_GET, "preferences_get", NULL},
    {"PATCH", "/v1/customers/{id}/preferences", ROUTE_PREFERENCES_PATCH, "preferences_patch", NULL},
    {"GET", "/v1/customers/{id}/consents", ROUTE_CONSENTS_LIST, "consents_list", NULL},
    {"POST", "/v1/customers/{id}/consents", ROUTE_CONSENT_CREATE, "consent_create", NULL},
    {"GET", "/v1/customers/{id}/contact-decision", ROUTE_CONTACT_DECISION, "contact_decision",
     "channel purpose at"},
    {"GET", "/v1/moments", ROUTE_MOMENTS, "moments",
     "kind at cursor segment_id purpose channel days limit"},
    {"GET", "/v1/customers/{id}/export", ROUTE_CUSTOMER_EXPORT, "customer_export", NULL},
    {"DELETE", "/v1/customers/{id}", ROUTE_CUSTOMER_ERASE, "customer_erase", NULL},
};

#define ROUTE_TABLE_SIZE (sizeof(ROUTES) / sizeof(ROUTES[0]))

/* Match path against pattern; on success copies the {id} segment (raw) to id. */
static bool path_matches(const char *pattern, const char *path, char *id, size_t idcap,
                         bool *has_id)
{
    const char *p = pattern, *s = path;
    *has_id = false;
    while (*p && *s) {
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
        if (!path_matches(ROUTES[i].pattern, path, raw_id, sizeof(raw_id), &has_id))
            continue;
        if (strcmp(ROUTES[i].method, method) != 0) {
            size_t len = strlen(out->allow);
            snprintf(out->allow + len, sizeof(out->allow) - len, "%s%s", len ? ", " : "",
                     ROUTES[i].method);
            path_known = true;
            continue;
        }
        out->route = ROUTES[i].route;
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
    for (size_t i = 0; i < ROUTE_TABLE_SIZE; i++)
        if (ROUTES[i].route == route)
            return &ROUTES[i];
    return NULL;
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

bool route_reads_from_replica(enum route route)
{
    switch (route) {
    case ROUTE_CUSTOMER_GET:
    case ROUTE_CUSTOMER_LOOKUP:
    case ROUTE_CUSTOMER_TIMELINE:
    case ROUTE_SEGMENT_CUSTOMERS:
    case ROUTE_SEGMENT_EXPORT:
    case ROUTE_KPIS:
        return true;
    default:
        return false;
    }
}

bool route_runs_long(enum route route)
{
    switch (route) {
    case ROUTE_SEGMENT_CREATE:
    case ROUTE_SEGMENT_PREVIEW:
    case ROUTE_SEGMENT_CUSTOMERS:
    case ROUTE_SEGMENT_EXPORT:
    case ROUTE_VALUE_RECOMPUTE:
    case ROUTE_KPIS:
    case ROUTE_MOMENTS:
    case ROUTE_CONFLICTS_LIST:
    case ROUTE_MERGE_CREATE:
    case ROUTE_UNMERGE:
    case ROUTE_CUSTOMER_EXPORT:
    case ROUTE_CUSTOMER_ERASE:
        return true;
    default:
        return false;
    }
}
