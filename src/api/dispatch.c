/*
 * dispatch: a routed request to its handler. Admits it first (the key, its
 * rate limit and the role the route's row allows: 401, 429, 403, or 503/500
 * when the key cannot be checked), then picks the pool the
 * request's reads go to (the primary, the read routes' own pool, or a
 * replica that has replayed the client's CRM-Min-LSN), calls the route's
 * handler through an array indexed by route id, and adds the replica
 * headers (CRM-Read-From, CRM-Write-LSN). The route's facts (path, roles,
 * flags, query) are router.c's; the handlers are the domain files'.
 */
#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "textutil.h"

static handler_fn *const HANDLERS[ROUTE_COUNT] = {
    [ROUTE_HEALTH] = handle_health,
    [ROUTE_READY] = handle_ready,
    [ROUTE_METRICS] = handle_metrics,
    [ROUTE_CUSTOMER_RESOLVE] = handle_resolve,
    [ROUTE_CUSTOMER_LOOKUP] = handle_lookup,
    [ROUTE_CUSTOMER_GET] = handle_customer_get,
    [ROUTE_CUSTOMER_TRAITS] = handle_traits,
    [ROUTE_CUSTOMER_TIMELINE] = handle_timeline,
    [ROUTE_INTERACTION_CREATE] = handle_interaction,
    [ROUTE_INTERACTION_BATCH] = handle_batch,
    [ROUTE_SEGMENT_CREATE] = handle_segment_create,
    [ROUTE_SEGMENT_LIST] = handle_segment_simple,
    [ROUTE_SEGMENT_PREVIEW] = handle_segment_preview,
    [ROUTE_SEGMENT_GET] = handle_segment_simple,
    [ROUTE_SEGMENT_DELETE] = handle_segment_simple,
    [ROUTE_SEGMENT_UPDATE] = handle_segment_update,
    [ROUTE_SEGMENT_CUSTOMERS] = handle_segment_customers,
    [ROUTE_SEGMENT_EXPORT] = handle_segment_export,
    [ROUTE_VALUE_RECOMPUTE] = handle_recompute,
    [ROUTE_VALUE_RUNS] = handle_value_runs,
    [ROUTE_VALUE_SETTINGS_GET] = handle_value_settings,
    [ROUTE_VALUE_SETTINGS_PATCH] = handle_value_settings,
    [ROUTE_KPIS] = handle_kpis,
    [ROUTE_KEY_CREATE] = handle_key_create,
    [ROUTE_KEY_LIST] = handle_key_list_or_revoke,
    [ROUTE_KEY_REVOKE] = handle_key_list_or_revoke,
    [ROUTE_CUSTOMER_MERGES] = handle_customer_merges,
    [ROUTE_CUSTOMER_SEGMENTS] = handle_customer_segments,
    [ROUTE_MERGE_CREATE] = handle_merge,
    [ROUTE_UNMERGE] = handle_unmerge,
    [ROUTE_BLOCKED_LIST] = handle_blocked_list,
    [ROUTE_BLOCKED_ADD] = handle_blocked_add,
    [ROUTE_BLOCKED_REMOVE] = handle_blocked_remove,
    [ROUTE_LIMITS_GET] = handle_limits_get,
    [ROUTE_LIMITS_SET] = handle_limits_set,
    [ROUTE_CONFLICTS_LIST] = handle_conflicts_list,
    [ROUTE_PREFERENCES_GET] = handle_preferences_get,
    [ROUTE_PREFERENCES_PATCH] = handle_preferences_patch,
    [ROUTE_CONSENTS_LIST] = handle_consents_list,
    [ROUTE_CONSENT_CREATE] = handle_consent_create,
    [ROUTE_CONTACT_DECISION] = handle_contact_decision,
    [ROUTE_MOMENTS] = handle_moments,
    [ROUTE_MOMENTS_RUN] = handle_moments_run,
    [ROUTE_CUSTOMER_EXPORT] = handle_customer_export,
    [ROUTE_CUSTOMER_ERASE] = handle_customer_erase,
    [ROUTE_PARTNER_CUSTOMER] = handle_partner_customer,
    [ROUTE_EVENTS] = handle_events,
    [ROUTE_WEBHOOK_CREATE] = handle_webhook_create,
    [ROUTE_WEBHOOK_LIST] = handle_webhook_simple,
    [ROUTE_WEBHOOK_GET] = handle_webhook_simple,
    [ROUTE_WEBHOOK_UPDATE] = handle_webhook_update,
    [ROUTE_WEBHOOK_DELETE] = handle_webhook_simple,
    [ROUTE_WEBHOOK_DELIVERIES] = handle_webhook_deliveries,
    [ROUTE_WEBHOOK_REPLAY] = handle_webhook_replay,
    [ROUTE_CASE_CREATE] = handle_case_create,
    [ROUTE_CASE_LIST] = handle_case_list,
    [ROUTE_CASE_GET] = handle_case_get,
    [ROUTE_CASE_PATCH] = handle_case_patch,
    [ROUTE_ME] = handle_me,
    [ROUTE_CONSOLE_INDEX] = handle_console,
    [ROUTE_CONSOLE_FILE] = handle_console,
    [ROUTE_IDENTIFIER_DETACH] = handle_identifier_detach,
    [ROUTE_NEVER_MERGE_LIST] = handle_never_merge_list,
    [ROUTE_NEVER_MERGE_ADD] = handle_never_merge_add,
    [ROUTE_NEVER_MERGE_REMOVE] = handle_never_merge_remove,
    [ROUTE_CUSTOMER_SUMMARY] = handle_customer_summary,
    [ROUTE_NBA_SETTINGS_GET] = handle_nba_settings,
    [ROUTE_NBA_SETTINGS_PUT] = handle_nba_settings,
    [ROUTE_MOMENT_SETTINGS_GET] = handle_moment_settings_get,
    [ROUTE_MOMENT_SETTINGS_PUT] = handle_moment_settings_put,
    [ROUTE_FX_RATES_GET] = handle_fx_rates,
    [ROUTE_FX_RATES_PUT] = handle_fx_rates,
    [ROUTE_SURVIVORSHIP_GET] = handle_survivorship,
    [ROUTE_SURVIVORSHIP_PUT] = handle_survivorship,
    [ROUTE_SEGMENT_LOOKALIKES] = handle_segment_lookalikes,
};

bool dispatch_admit(struct app *app, enum route route, const char *path,
                    const char *authorization, const char *x_api_key, struct principal *who,
                    struct response *res)
{
    bool replica_ok = app->replica != NULL && route_reads_from_replica(route);
    char detail[96];
    switch (access_check(app->access, authorization, x_api_key, replica_ok, who)) {
    case ACCESS_OK:
        break;
    case ACCESS_UNAVAILABLE:
        respond_problem(res, PROBLEM_SERVICE_UNAVAILABLE, "the database is unreachable; retry",
                        path);
        return false;
    case ACCESS_ERROR:
        respond_problem(res, PROBLEM_INTERNAL, "the key could not be checked", path);
        return false;
    case ACCESS_NO_KEY:
    case ACCESS_BAD_KEY:
        respond_problem(res, PROBLEM_UNAUTHORIZED,
                        "send a valid API key as 'Authorization: Bearer <key>'", path);
        res->auth_challenge = true;
        return false;
    }
    if (!access_rate_take(app->access, who->key_id, &res->retry_after)) {
        respond_problem(res, PROBLEM_TOO_MANY_REQUESTS,
                        "this API key is over its request rate; retry later", path);
        res->retry_after = res->retry_after > 0 ? res->retry_after : 1;
        return false;
    }
    if (!role_allows(who->role, route)) {
        snprintf(detail, sizeof(detail), "the %s role may not call this route",
                 role_name(who->role));
        respond_problem(res, PROBLEM_FORBIDDEN, detail, path);
        return false;
    }
    return true;
}

enum route dispatch_first_unhandled(void)
{
    for (int r = 0; r < ROUTE_COUNT; r++)
        if (HANDLERS[r] == NULL)
            return (enum route)r;
    return ROUTE_COUNT;
}

/* Where the request's reads go (see struct request). False when res was
 * filled: a malformed CRM-Min-LSN. */
static bool choose_read_pool(struct app *app, struct request *req, struct response *res)
{
    req->reads = app->pool;
    if (req->min_lsn != NULL && req->min_lsn[0] == '\0')
        req->min_lsn = NULL; /* an empty header is no header */
    if (!route_reads_from_replica(req->match->route))
        return true;
    if (app->replica == NULL) {
        req->reads = app->reads; /* the primary, through the read routes' own pool */
        return true;
    }
    if (req->min_lsn != NULL && !pg_lsn_valid(req->min_lsn)) {
        respond_problem(res, PROBLEM_INVALID_HEADER,
                        "CRM-Min-LSN must be a PostgreSQL LSN such as 0/16B3748, as given in "
                        "CRM-Write-LSN", req->path);
        return false;
    }
    if (req->min_lsn == NULL ||
        db_replica_caught_up(app->replica, req->min_lsn, app->cfg->replica_wait_ms))
        req->reads = app->replica;
    return true;
}

void handle_request(struct app *app, const struct request *in, struct response *res)
{
    struct request req = *in;
    if (!choose_read_pool(app, &req, res))
        return;
    HANDLERS[req.match->route](app, &req, res);
    if (app->replica == NULL)
        return;
    if (req.reads == app->replica)
        res->read_from = db_served_by();
    else if (route_reads_from_replica(req.match->route))
        res->read_from = "primary";
    /* A write's position in the WAL, for the client's next CRM-Min-LSN. */
    if (strcmp(req.method, "GET") != 0 && strcmp(req.method, "HEAD") != 0 &&
        res->status >= 200 && res->status < 300 &&
        !db_write_lsn(app->pool, res->write_lsn, sizeof(res->write_lsn)))
        res->write_lsn[0] = '\0';
}
