/*
 * router: maps (method, path) to a route of the API. Owns the route table,
 * the 404/405 distinction (with the Allow list for 405) and the parsing of
 * the {id} path segment into a canonical UUID. Pure: no I/O.
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
    ROUTE_SEGMENT_CUSTOMERS,
    ROUTE_SEGMENT_EXPORT,
    ROUTE_VALUE_RECOMPUTE,
    ROUTE_KPIS,
    ROUTE_KEY_CREATE,
    ROUTE_KEY_LIST,
    ROUTE_KEY_REVOKE,
    ROUTE_CUSTOMER_MERGES,
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
    ROUTE_CUSTOMER_EXPORT,
    ROUTE_CUSTOMER_ERASE,
    ROUTE_COUNT
};

enum route_status {
    ROUTE_MATCHED,
    ROUTE_NOT_FOUND,
    ROUTE_METHOD_NOT_ALLOWED, /* allow lists the methods the path accepts */
    ROUTE_BAD_UUID,           /* the path has the shape of a route but {id} is no UUID */
};

struct route_match {
    enum route_status status;
    enum route route;
    char id[UUID_TEXT_LEN + 1]; /* canonical {id} when the route has one */
    char allow[32];
};

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

/* Routes whose reads may be served by a streaming replica: profile, lookup,
 * timeline, segment members and export, KPIs (all GETs, none writes). */
bool route_reads_from_replica(enum route route);

/* True for the routes whose work grows with the data set rather than one
 * customer (segments, KPIs, value runs, moments, conflicts) or moves a whole
 * customer (merge, unmerge, export, erase): the HTTP layer runs them on its
 * long-route threads so they cannot hold up the requests that share their
 * worker thread. */
bool route_runs_long(enum route route);

#endif
