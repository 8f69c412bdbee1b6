/*
 * summary: the call-centre agent's summary of one customer and its next
 * best action (docs/summary.md), and the next-best-action settings (the
 * rule list and its thresholds, read by the agents' roles and replaced as a
 * whole by admin). The summary is one statement (crm.customer_summary) that
 * returns the facts, the rules and the thresholds; the rule that fires is
 * chosen here by the pure nba module and answered in their place. The read
 * is audited like the profile read; an absorbed id answers its survivor's
 * summary with Content-Location, an erased customer 410.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "customize.h"
#include "handlers.h"
#include "nba.h"
#include "store.h"

void handle_customer_summary(struct app *app, const struct request *req, struct response *res)
{
    const char *params[2] = {req->match->id, consent_purpose_list()};
    char err[API_ERR_LEN];
    json_t *out = NULL, *nba, *survivor;
    struct nba_thresholds th;
    struct nba_facts facts;
    enum db_status st = store_call(req->reads, STMT_SUMMARY, 2, params, &out, err, sizeof(err));

    if (st != DB_OK) {
        json_decref(out);
        respond_db_failure(res, st, err, req->path);
        return;
    }
    if (out == NULL) {
        respond_problem(res, PROBLEM_NOT_FOUND, "no customer with this id", req->path);
        return;
    }
    if (respond_if_gone(res, out, req->path))
        return;
    nba = json_incref(json_object_get(out, "nba"));
    json_object_del(out, "nba");
    if (!nba_thresholds_parse(json_object_get(nba, "thresholds"), &th)) {
        json_decref(nba);
        json_decref(out);
        respond_problem(res, PROBLEM_INTERNAL, "the next-best-action settings are unreadable",
                        req->path);
        return;
    }
    nba_facts_from_summary(out, &facts);
    json_object_set_new(out, "next_best_action",
                        nba_recommend(json_object_get(nba, "rules"), &facts, &th));
    json_decref(nba);
    if (!audit_read_or_fail(app, req, res, "customer.summary",
                            json_string_value(json_object_get(out, "customer_id")))) {
        json_decref(out);
        return;
    }
    survivor = json_object_get(out, "merged_into");
    if (json_is_string(survivor))
        snprintf(res->content_location, sizeof(res->content_location), "/v1/customers/%s/summary",
                 json_string_value(survivor));
    respond_json(res, 200, out);
}

void handle_nba_settings(struct app *app, const struct request *req, struct response *res)
{
    char err[API_ERR_LEN], *doc = NULL;
    json_t *out = NULL, *errors;
    enum db_status st;

    if (req->match->route == ROUTE_NBA_SETTINGS_GET) {
        st = store_call(app->pool, STMT_NBA_SETTINGS_GET, 0, NULL, &out, err, sizeof(err));
    } else {
        const char *params[3];
        errors = json_array();
        if (!nba_settings_check(req->body, errors)) {
            respond_validation(res, errors, req->path);
            return;
        }
        json_decref(errors);
        doc = json_dumps(req->body, JSON_COMPACT);
        params[0] = doc;
        params[1] = req->who != NULL ? req->who->key_id : NULL;
        params[2] = req->who != NULL ? role_name(req->who->role) : NULL;
        st = store_call(app->pool, STMT_NBA_SETTINGS_PUT, 3, params, &out, err, sizeof(err));
        free(doc);
    }
    respond_found(res, st, out, err, "no next-best-action settings", req->path);
}
