/*
 * cases: the case routes (docs/cases.md): open a case for a customer, list
 * a customer's cases, read one case with its interactions, and change one
 * (status, priority, subject, assignee, purchase). Reads are audited in the
 * database, in the statement that reads. A change of status is checked
 * against the transition table of cases.c by the database, under the case's
 * row lock; an illegal one answers 409 case-transition with the statuses
 * the case may move to. A case of an erased customer answers 410.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "handlers.h"
#include "store.h"
#include "textutil.h"

#define CASE_LIST_LIMIT_DEFAULT 100
#define CASE_LIST_LIMIT_MAX 1000

/* The end of every case call: st's failure (503/500), 404 when out is NULL,
 * 410 for an erased customer, 422 when the database found a field wrong
 * ({errors}), else status with out. */
static void respond_case(struct response *res, enum db_status st, json_t *out, const char *err,
                         const char *not_found, const char *path, int status)
{
    json_t *errors;
    if (st != DB_OK) {
        json_decref(out);
        respond_db_failure(res, st, err, path);
    } else if (out == NULL) {
        respond_problem(res, PROBLEM_NOT_FOUND, not_found, path);
    } else if (respond_if_gone(res, out, path)) {
        return;
    } else if (json_is_array(errors = json_object_get(out, "errors"))) {
        json_incref(errors);
        json_decref(out);
        respond_validation(res, errors, path);
    } else {
        respond_json(res, status, out);
    }
}

void handle_case_create(struct app *app, const struct request *req, struct response *res)
{
    struct case_create cc;
    json_t *errors = json_array(), *out = NULL;
    char case_id[UUID_TEXT_LEN + 1], err[API_ERR_LEN];
    const char *params[9];
    enum db_status st;

    if (!validate_case_create(req->body, &cc, errors)) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    uuid_new(case_id);
    params[0] = req->match->id;
    params[1] = case_id;
    params[2] = cc.source;
    params[3] = cc.channel;
    params[4] = cc.subject;
    params[5] = cc.priority;
    params[6] = cc.assignee;
    params[7] = cc.purchase_id[0] ? cc.purchase_id : NULL;
    params[8] = cc.opened_at;
    st = store_call(app->pool, STMT_CASE_CREATE, 9, params, &out, err, sizeof(err));
    respond_case(res, st, out, err, "no customer with this id", req->path, 201);
    if (res->status == 201)
        snprintf(res->content_location, sizeof(res->content_location), "/v1/cases/%s", case_id);
}

void handle_case_list(struct app *app, const struct request *req, struct response *res)
{
    const char *status, *params[5];
    char limit_text[16], err[API_ERR_LEN], detail[128];
    json_t *out = NULL;
    int limit;
    enum db_status st;

    if (!query_param(req, res, "status", &status) ||
        !int_param(req, res, "limit", CASE_LIST_LIMIT_DEFAULT, 1, CASE_LIST_LIMIT_MAX, &limit))
        return;
    if (status != NULL && !case_status_valid(status)) {
        snprintf(detail, sizeof(detail), "status must be one of: %s", case_status_list());
        respond_problem(res, PROBLEM_INVALID_QUERY, detail, req->path);
        return;
    }
    snprintf(limit_text, sizeof(limit_text), "%d", limit);
    params[0] = req->match->id;
    params[1] = status;
    params[2] = limit_text;
    params[3] = req->who->key_id;
    params[4] = role_name(req->who->role);
    st = store_call(app->pool, STMT_CASE_LIST, 5, params, &out, err, sizeof(err));
    respond_case(res, st, out, err, "no customer with this id", req->path, 200);
}

void handle_case_get(struct app *app, const struct request *req, struct response *res)
{
    const char *params[3] = {req->match->id, req->who->key_id, role_name(req->who->role)};
    json_t *out = NULL;
    char err[API_ERR_LEN];
    enum db_status st = store_call(app->pool, STMT_CASE_GET, 3, params, &out, err, sizeof(err));
    respond_case(res, st, out, err, "no case with this id", req->path, 200);
}

/* 409 case-transition: from, to and the statuses the case may move to. */
static void respond_transition(struct response *res, json_t *out, const char *path)
{
    const char *from = json_string_value(json_object_get(out, "from"));
    const char *to = json_string_value(json_object_get(out, "to"));
    const char *s;
    char detail[160];
    json_t *allowed = json_array();
    for (int i = 0; (s = case_status_name(i)) != NULL; i++)
        if (from != NULL && strcmp(s, from) != 0 && case_transition_allowed(from, s))
            json_array_append_new(allowed, json_string(s));
    snprintf(detail, sizeof(detail), "a case that is %.16s cannot become %.16s",
             from ? from : "?", to ? to : "?");
    respond_problem(res, PROBLEM_CASE_TRANSITION, detail, path);
    json_object_set_new(res->body, "from", json_string(from ? from : ""));
    json_object_set_new(res->body, "to", json_string(to ? to : ""));
    json_object_set_new(res->body, "allowed", allowed);
    json_decref(out);
}

void handle_case_patch(struct app *app, const struct request *req, struct response *res)
{
    json_t *errors = json_array(), *patch = NULL, *out = NULL;
    const char *status, *params[3];
    char allowed[64], err[API_ERR_LEN], *patch_text;
    enum db_status st;

    if (!validate_case_patch(req->body, &patch, &status, errors)) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    if (status != NULL && !case_allowed_from(status, allowed, sizeof(allowed))) {
        json_decref(patch);
        respond_problem(res, PROBLEM_INTERNAL, "the transition table is inconsistent", req->path);
        return;
    }
    patch_text = json_dumps(patch, JSON_COMPACT);
    params[0] = req->match->id;
    params[1] = patch_text;
    params[2] = status != NULL ? allowed : NULL;
    st = store_call(app->pool, STMT_CASE_PATCH, 3, params, &out, err, sizeof(err));
    free(patch_text);
    json_decref(patch);
    if (st == DB_OK && out != NULL &&
        json_is_string(json_object_get(out, "status")) &&
        strcmp(json_string_value(json_object_get(out, "status")), "illegal_transition") == 0) {
        respond_transition(res, out, req->path);
        return;
    }
    respond_case(res, st, out, err, "no case with this id", req->path, 200);
}
