/*
 * handlers: the route handlers, one function per route (a few serve
 * several routes of one kind), each defined in the handler file of its
 * domain under src/api/, and handle_request, which api/dispatch.c defines:
 * it picks the read pool and calls the route's handler through an array
 * indexed by route id. Each handler takes a routed, authorised request
 * whose body (if any) is a parsed JSON object, validates it, calls the
 * store and fills in the response.
 */
#ifndef CRM_HANDLERS_H
#define CRM_HANDLERS_H

#include "api.h"

typedef void handler_fn(struct app *app, const struct request *req, struct response *res);

/* The gate of a non-public route: the API key (Authorization: Bearer or
 * X-API-Key; either may be NULL), its rate limit and the role's permission
 * for route. True with who filled; false with res filled (401 with a
 * challenge, 429 with Retry-After, 403, 503 or 500). */
bool dispatch_admit(struct app *app, enum route route, const char *path,
                    const char *authorization, const char *x_api_key, struct principal *who,
                    struct response *res);

void handle_request(struct app *app, const struct request *req, struct response *res);

/* The first route without a handler, or ROUTE_COUNT when every route has one. */
enum route dispatch_first_unhandled(void);

/* operations.c */
handler_fn handle_health, handle_ready, handle_metrics;
/* customers.c */
handler_fn handle_resolve, handle_lookup, handle_customer_get, handle_traits, handle_timeline;
/* interactions.c */
handler_fn handle_interaction, handle_batch;
/* segments.c: handle_segment_simple serves list, get and delete;
 * handle_value_settings serves GET and PATCH */
handler_fn handle_segment_create, handle_segment_update, handle_segment_simple,
    handle_segment_preview, handle_segment_customers, handle_segment_export, handle_kpis,
    handle_recompute, handle_customer_segments, handle_value_runs, handle_value_settings;
/* keys.c: handle_key_list_or_revoke serves list and revoke; handle_me: GET /v1/me */
handler_fn handle_key_create, handle_key_list_or_revoke, handle_me;
/* console.c: serves "/console/" and "/console/{file}" */
handler_fn handle_console;
/* identity.c */
handler_fn handle_customer_merges, handle_merge, handle_unmerge, handle_blocked_list,
    handle_blocked_add, handle_blocked_remove, handle_limits_get, handle_limits_set,
    handle_conflicts_list;
/* customize.c */
handler_fn handle_preferences_get, handle_preferences_patch, handle_consents_list,
    handle_consent_create, handle_contact_decision, handle_moments, handle_moments_run,
    handle_customer_export, handle_customer_erase;
/* api/customers.c: a partner key's read of the fields shared with it. */
handler_fn handle_partner_customer;
/* activation.c: handle_webhook_simple serves list, get and delete */
handler_fn handle_events, handle_webhook_create, handle_webhook_update, handle_webhook_simple,
    handle_webhook_deliveries, handle_webhook_replay;
/* cases.c */
handler_fn handle_case_create, handle_case_list, handle_case_get, handle_case_patch;
/* identity.c: identity rules (detach, never merge) */
handler_fn handle_identifier_detach, handle_never_merge_list, handle_never_merge_add,
    handle_never_merge_remove;
/* summary.c: handle_nba_settings serves GET and PUT */
handler_fn handle_customer_summary, handle_nba_settings;
/* customize.c: GET and PUT /v1/settings/moments */
handler_fn handle_moment_settings_get, handle_moment_settings_put;
/* segments.c: GET and PUT /v1/settings/fx-rates */
handler_fn handle_fx_rates;
/* survivorship.c: serves GET and PUT of the survivorship rules */
handler_fn handle_survivorship;
/* lookalikes.c */
handler_fn handle_segment_lookalikes;

#endif
