/*
 * router: the route table and what is derived from it. Owns, in one row per
 * route, its method, path pattern, name, the roles that may call it, its
 * flags (public, replica read, long) and the query parameters it reads; maps
 * (method, path) to a route with the 404/405 distinction (with the Allow
 * list for 405) and parses the {id} path segment into a canonical UUID;
 * a {file} at the end of a pattern matches a relative file name (see
 * route_request).
 * Pure: no I/O. The handler of each route is dispatch.c's.
 */
#ifndef CRM_ROUTER_H
#define CRM_ROUTER_H

#include "textutil.h"

enum route {
    ROUTE_HEALTH,
    ROUTE_READY,
    ROUTE_METRICS,
    ROUTE_CUSTOMER_RESOLVE,
    ROUTE_CUSTOMER_LOOKUP,
    ROUTE_CUSTOMER_GET,
    ROUTE_CUSTOMER_TRAITS,
    ROUTE_CUSTOMER_TIMELINE,
    ROUTE_INTERACTION_CREATE,
    ROUTE_INTERACTION_BATCH,
    ROUTE_SEGMENT_CREATE,
    ROUTE_SEGMENT_LIST,
    ROUTE_SEGMENT_PREVIEW,
    ROUTE_SEGMENT_GET,
    ROUTE_SEGMENT_DELETE,
    ROUTE_SEGMENT_UPDATE,
    ROUTE_SEGMENT_CUSTOMERS,
    ROUTE_SEGMENT_EXPORT,
    ROUTE_VALUE_RECOMPUTE,
    ROUTE_VALUE_RUNS,
    ROUTE_VALUE_SETTINGS_GET,
    ROUTE_VALUE_SETTINGS_PATCH,
    ROUTE_KPIS,
    ROUTE_KEY_CREATE,
    ROUTE_KEY_LIST,
    ROUTE_KEY_REVOKE,
    ROUTE_CUSTOMER_MERGES,
    ROUTE_CUSTOMER_SEGMENTS,
    ROUTE_MERGE_CREATE,
    ROUTE_UNMERGE,
    ROUTE_BLOCKED_LIST,
    ROUTE_BLOCKED_ADD,
    ROUTE_BLOCKED_REMOVE,
    ROUTE_LIMITS_GET,
    ROUTE_LIMITS_SET,
    ROUTE_CONFLICTS_LIST,
    ROUTE_PREFERENCES_GET,
    ROUTE_PREFERENCES_PATCH,
    ROUTE_CONSENTS_LIST,
    ROUTE_CONSENT_CREATE,
    ROUTE_CONTACT_DECISION,
    ROUTE_MOMENTS,
    ROUTE_MOMENTS_RUN,
    ROUTE_CUSTOMER_EXPORT,
    ROUTE_CUSTOMER_ERASE,
    ROUTE_PARTNER_CUSTOMER,
    ROUTE_EVENTS,
    ROUTE_WEBHOOK_CREATE,
    ROUTE_WEBHOOK_LIST,
    ROUTE_WEBHOOK_GET,
    ROUTE_WEBHOOK_UPDATE,
    ROUTE_WEBHOOK_DELETE,
    ROUTE_WEBHOOK_DELIVERIES,
    ROUTE_WEBHOOK_REPLAY,
    ROUTE_CASE_CREATE,
    ROUTE_CASE_LIST,
    ROUTE_CASE_GET,
    ROUTE_CASE_PATCH,
    ROUTE_ME,
    ROUTE_CONSOLE_INDEX,
    ROUTE_CONSOLE_FILE,
    ROUTE_IDENTIFIER_DETACH,
    ROUTE_NEVER_MERGE_LIST,
    ROUTE_NEVER_MERGE_ADD,
    ROUTE_NEVER_MERGE_REMOVE,
    ROUTE_CUSTOMER_SUMMARY,
    ROUTE_NBA_SETTINGS_GET,
    ROUTE_NBA_SETTINGS_PUT,
    ROUTE_MOMENT_SETTINGS_GET,
    ROUTE_MOMENT_SETTINGS_PUT,
    ROUTE_FX_RATES_GET,
    ROUTE_FX_RATES_PUT,
    ROUTE_SURVIVORSHIP_GET,
    ROUTE_SURVIVORSHIP_PUT,
    ROUTE_SEGMENT_LOOKALIKES,
    ROUTE_COUNT
};

/* The roles of API keys. Role names and key handling are auth.c's; which
 * role may call which route is the route table's. */
enum role { ROLE_FRONT_OFFICE, ROLE_CALL_CENTER, ROLE_MARKETING, ROLE_PARTNER, ROLE_ADMIN,
            ROLE_COUNT };

/* Route flags (the table's flags column). */
#define ROUTE_FLAG_PUBLIC 1u       /* anyone may call it without a key (health checks) */
#define ROUTE_FLAG_REPLICA_READ 2u /* its reads may be served by a streaming replica */
#define ROUTE_FLAG_LONG 4u         /* runs on the long-route threads (see route_runs_long) */

enum route_status {
    ROUTE_MATCHED,
    ROUTE_NOT_FOUND,
    ROUTE_METHOD_NOT_ALLOWED, /* allow lists the methods the path accepts */
    ROUTE_BAD_UUID,           /* the path has the shape of a route but {id} is no UUID */
};

/* The longest {file} a path may name (see route_request). */
#define ROUTE_FILE_MAX 96

struct route_match {
    enum route_status status;
    enum route route;
    char id[UUID_TEXT_LEN + 1]; /* canonical {id} when the route has one */
    char file[ROUTE_FILE_MAX + 1]; /* {file} when the route has one */
    char allow[32];
};

/* {id} matches one non-empty segment, then checked to be a UUID (else
 * ROUTE_BAD_UUID). {file}, only at the end of a pattern, matches the rest
 * of the path when it is a relative file name: segments of letters, digits,
 * '.', '_' and '-' that do not start with '.' (so never "..", "" or a
 * hidden file), at most ROUTE_FILE_MAX bytes; any other rest is no match
 * (404). */
void route_request(const char *method, const char *path, struct route_match *out);

/* Short stable name of a route ("customer_get"), for logs and metrics. */
const char *route_name(enum route route);

/* The query parameters a route reads, space-separated ("" for none). Any
 * other parameter is refused with 400 by the HTTP layer, so a misspelt
 * filter (?typ=complaint) is an error, not a silently unfiltered answer. */
const char *route_query_params(enum route route);

/* Position of key (key_len bytes, not NUL-terminated) in route_query_params,
 * or -1 when the route does not read it. At most 32 parameters per route. */
int route_query_param_index(enum route route, const char *key, size_t key_len);

unsigned int route_flags(enum route route);

/* The roles that may call the route, as bits 1 << enum role. */
unsigned int route_roles(enum route route);

/* Routes anyone may call without a key (health checks). */
bool route_is_public(enum route route);

/* Whether the role may call the route at all (partner calls are further
 * limited to their own namespace by the handlers). */
bool role_allows(enum role role, enum route route);

/* Routes whose reads may be served by a streaming replica: profile, lookup,
 * timeline, segment members and export, KPIs (all GETs, none writes). */
bool route_reads_from_replica(enum route route);

/* True for the routes whose work grows with the data set rather than one
 * customer (segments, KPIs, value runs, moments, conflicts) or moves a whole
 * customer (merge, unmerge, export, erase) or wait for DNS (webhook create and
 * change): the HTTP layer runs them on its
 * long-route threads so they cannot hold up the requests that share their
 * worker thread. */
bool route_runs_long(enum route route);

#endif
