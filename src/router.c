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
};

static const struct route_def ROUTES[] = {
    {"GET", "/health", ROUTE_HEALTH, "health"},
    {"GET", "/ready", ROUTE_READY, "ready"},
    {"GET", "/metrics", ROUTE_METRICS, "metrics"},
    {"POST", "/v1/customers:resolve", ROUTE_CUSTOMER_RESOLVE, "customer_resolve"},
    {"GET", "/v1/customers", ROUTE_CUSTOMER_LOOKUP, "customer_lookup"},
    {"GET", "/v1/customers/{id}", ROUTE_CUSTOMER_GET, "customer_get"},
    {"PATCH", "/v1/customers/{id}/traits", ROUTE_CUSTOMER_TRAITS, "customer_traits"},
    {"GET", "/v1/customers/{id}/interactions", ROUTE_CUSTOMER_TIMELINE, "customer_timeline"},
    {"POST", "/v1/interactions", ROUTE_INTERACTION_CREATE, "interaction_create"},
    {"POST", "/v1/interactions:batch", ROUTE_INTERACTION_BATCH, "interaction_batch"},
    {"POST", "/v1/segments", ROUTE_SEGMENT_CREATE, "segment_create"},
    {"GET", "/v1/segments", ROUTE_SEGMENT_LIST, "segment_list"},
    {"POST", "/v1/segments:preview", ROUTE_SEGMENT_PREVIEW, "segment_preview"},
    {"GET", "/v1/segments/{id}", ROUTE_SEGMENT_GET, "segment_get"},
    {"DELETE", "/v1/segments/{id}", ROUTE_SEGMENT_DELETE, "segment_delete"},
    {"GET", "/v1/segments/{id}/customers", ROUTE_SEGMENT_CUSTOMERS, "segment_customers"},
    {"GET", "/v1/segments/{id}/export", ROUTE_SEGMENT_EXPORT, "segment_export"},
    {"POST", "/v1/value:recompute", ROUTE_VALUE_RECOMPUTE, "value_recompute"},
    {"GET", "/v1/kpis", ROUTE_KPIS, "kpis"},
    {"POST", "/v1/admin/keys", ROUTE_KEY_CREATE, "key_create"},
    {"GET", "/v1/admin/keys", ROUTE_KEY_LIST, "key_list"},
    {"DELETE", "/v1/admin/keys/{id}", ROUTE_KEY_REVOKE, "key_revoke"},
    {"GET", "/v1/customers/{id}/merges", ROUTE_CUSTOMER_MERGES, "customer_merges"},
    {"POST", "/v1/admin/merges", ROUTE_MERGE_CREATE, "merge_create"},
    {"POST", "/v1/admin/unmerge", ROUTE_UNMERGE, "unmerge"},
    {"GET", "/v1/admin/blocked-identifiers", ROUTE_BLOCKED_LIST, "blocked_list"},
    {"POST", "/v1/admin/blocked-identifiers", ROUTE_BLOCKED_ADD, "blocked_add"},
    {"DELETE", "/v1/admin/blocked-identifiers", ROUTE_BLOCKED_REMOVE, "blocked_remove"},
    {"GET", "/v1/admin/identifier-limits", ROUTE_LIMITS_GET, "limits_get"},
    {"PUT", "/v1/admin/identifier-limits", ROUTE_LIMITS_SET, "limits_set"},
    {"GET", "/v1/admin/identity-conflicts", ROUTE_CONFLICTS_LIST, "conflicts_list"},
    {"GET", "/v1/customers/{id}/preferences", ROUTE_PREFERENCES_GET, "preferences_get"},
    {"PATCH", "/v1/customers/{id}/preferences", ROUTE_PREFERENCES_PATCH, "preferences_patch"},
    {"GET", "/v1/customers/{id}/consents", ROUTE_CONSENTS_LIST, "consents_list"},
    {"POST", "/v1/customers/{id}/consents", ROUTE_CONSENT_CREATE, "consent_create"},
    {"GET", "/v1/customers/{id}/contact-decision", ROUTE_CONTACT_DECISION, "contact_decision"},
    {"GET", "/v1/moments", ROUTE_MOMENTS, "moments"},
    {"GET", "/v1/customers/{id}/export", ROUTE_CUSTOMER_EXPORT, "customer_export"},
    {"DELETE", "/v1/customers/{id}", ROUTE_CUSTOMER_ERASE, "customer_erase"},
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

const char *route_name(enum route route)
{
    for (size_t i = 0; i < ROUTE_TABLE_SIZE; i++)
        if (ROUTES[i].route == route)
            return ROUTES[i].name;
    return "unknown";
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
