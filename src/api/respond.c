/*
 * respond: what every handler file shares, so that handler files never call
 * each other. Filling a response (JSON, ready JSON text, problem documents,
 * validation errors, database failures as 503/500), reading a query
 * parameter, auditing a read or failing it, the 410 answer for an erased
 * customer and the 422 answer when every identifier was blocked, the
 * partner-scope check, and loading a saved segment by id. Does I/O only
 * through the store (load_segment) and the audit queue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "segment.h"
#include "store.h"
#include "store_value.h"
#include "textutil.h"
#include "validate.h"

void respond_problem(struct response *res, enum problem_kind kind, const char *detail,
                     const char *instance)
{
    json_decref(res->body);
    free(res->raw_body);
    res->raw_body = NULL;
    res->status = problem_status(kind);
    res->body = problem_new(kind, detail, instance);
    res->problem = true;
    if (kind == PROBLEM_SERVICE_UNAVAILABLE)
        res->retry_after = 1;
}

void respond_raw_json(struct response *res, int status, char *text)
{
    json_decref(res->body);
    res->body = NULL;
    free(res->raw_body);
    res->raw_body = text;
    res->status = status;
    res->problem = false;
}

void respond_json(struct response *res, int status, json_t *body)
{
    json_decref(res->body);
    free(res->raw_body);
    res->raw_body = NULL;
    res->status = status;
    res->body = body;
    res->problem = false;
}

void respond_validation(struct response *res, json_t *errors, const char *instance)
{
    json_decref(res->body);
    res->status = 422;
    res->body = problem_validation(errors, instance);
    res->problem = true;
}

void respond_db_failure(struct response *res, enum db_status st, const char *err,
                        const char *instance)
{
    if (st == DB_UNAVAILABLE) {
        respond_problem(res, PROBLEM_SERVICE_UNAVAILABLE, "the database is unreachable; retry",
                        instance);
    } else if (st == DB_CANCELLED) {
        log_msg(LOG_ERROR, "request", "%s: %s", instance, err);
        respond_problem(res, PROBLEM_SERVICE_UNAVAILABLE,
                        "the request was cancelled (it ran past the statement timeout, or the "
                        "server is shutting down); nothing was changed; retry",
                        instance);
    } else {
        log_msg(LOG_ERROR, "request", "%s: %s", instance, err);
        respond_problem(res, PROBLEM_INTERNAL, "the request could not be completed", instance);
    }
}

void respond_found(struct response *res, enum db_status st, json_t *out, const char *err,
                   const char *not_found, const char *instance)
{
    if (st != DB_OK) {
        json_decref(out);
        respond_db_failure(res, st, err, instance);
    } else if (out == NULL) {
        respond_problem(res, PROBLEM_NOT_FOUND, not_found, instance);
    } else {
        respond_json(res, 200, out);
    }
}

bool audit_read_or_fail(struct app *app, const struct request *req, struct response *res,
                        const char *action, const char *customer_id)
{
    if (req->who == NULL || customer_id == NULL)
        return true;
    if (audit_add(app->audit, req->who, action, customer_id))
        return true;
    respond_problem(res, PROBLEM_SERVICE_UNAVAILABLE,
                    "the read could not be audited; retry", req->path);
    return false;
}

/* A query parameter, checked for UTF-8. Returns false (and responds) if invalid. */
bool query_param(const struct request *req, struct response *res, const char *key,
                 const char **value)
{
    const char *v;
    *value = NULL;
    if (route_query_param_index(req->match->route, key, strlen(key)) < 0) {
        /* The HTTP layer refuses parameters a route does not list, so this
         * one would never arrive: add it to the route's row in router.c. */
        log_msg(LOG_ERROR, "request", "bug: route %s reads query parameter '%s' it does not list",
                route_name(req->match->route), key);
        respond_problem(res, PROBLEM_INTERNAL, "the request could not be completed", req->path);
        return false;
    }
    v = req->query(req->query_ctx, key);
    if (v == NULL)
        return true;
    if (!utf8_valid(v, strlen(v))) {
        char detail[96];
        snprintf(detail, sizeof(detail), "query parameter '%s' is not valid UTF-8", key);
        respond_problem(res, PROBLEM_INVALID_UTF8, detail, req->path);
        return false;
    }
    *value = v;
    return true;
}

/* Partner keys may only speak about their own namespace's external ids. */
bool partner_scope_ok(const struct principal *who, bool by_customer_id,
                      const struct identifier_list *ids)
{
    if (who == NULL || who->role != ROLE_PARTNER)
        return true;
    if (by_customer_id)
        return false;
    for (int i = 0; i < ids->count; i++)
        if (ids->items[i].kind != ID_EXTERNAL ||
            strcmp(ids->items[i].namespace_, who->namespace_) != 0)
            return false;
    return true;
}

const char PARTNER_SCOPE[] =
    "partner keys may only use identifiers of kind 'external' in their own namespace, "
    "and may not write traits";

/* True (and res filled with a 422) when every identifier was a blocked placeholder. */
bool respond_if_blocked(json_t *out, const char *prefix, const char *path,
                        struct response *res)
{
    json_t *errors;
    if (!json_is_string(json_object_get(out, "status")) ||
        strcmp(json_string_value(json_object_get(out, "status")), "blocked") != 0)
        return false;
    errors = json_array();
    verr_add(errors, prefix, "identifiers",
             "every identifier is a blocked placeholder value; give a real one");
    respond_validation(res, errors, path);
    json_object_set(res->body, "ignored", json_object_get(out, "ignored"));
    return true;
}

bool respond_if_gone(struct response *res, json_t *doc, const char *instance)
{
    char detail[160];
    if (!json_is_true(json_object_get(doc, "gone")))
        return false;
    snprintf(detail, sizeof(detail), "customer %.36s was erased at %.40s",
             json_string_value(json_object_get(doc, "customer_id")),
             json_string_value(json_object_get(doc, "erased_at")));
    json_decref(doc);
    respond_problem(res, PROBLEM_GONE, detail, instance);
    return true;
}

bool load_segment_by_text(struct app *app, const struct request *req, struct response *res,
                          const char *text, struct segment_sql *seg)
{
    char id[UUID_TEXT_LEN + 1];
    if (!uuid_canonical(text, id)) {
        respond_problem(res, PROBLEM_INVALID_QUERY, "segment_id must be a UUID", req->path);
        return false;
    }
    return load_segment(app, req, res, id, seg);
}

bool load_segment(struct app *app, const struct request *req, struct response *res,
                  const char *id, struct segment_sql *seg)
{
    json_t *doc = NULL, *errors;
    char err[API_ERR_LEN];
    enum db_status st = store_segment_get(app->pool, id, &doc, err, sizeof(err));
    if (st != DB_OK) {
        respond_db_failure(res, st, err, req->path);
        return false;
    }
    if (doc == NULL) {
        respond_problem(res, PROBLEM_NOT_FOUND, "no segment with this id", req->path);
        return false;
    }
    errors = json_array();
    if (!segment_compile(json_object_get(doc, "rule"), "/rule", seg, errors)) {
        char *text = json_dumps(errors, JSON_COMPACT);
        log_msg(LOG_ERROR, "request", "stored segment %s no longer compiles: %s", id, text);
        free(text);
        respond_problem(res, PROBLEM_INTERNAL, "the stored rule no longer compiles", req->path);
        json_decref(errors);
        json_decref(doc);
        return false;
    }
    json_decref(errors);
    json_decref(doc);
    return true;
}

bool int_param(const struct request *req, struct response *res, const char *key, int def,
               int min, int max, int *out)
{
    const char *text;
    char *end, detail[96];
    long n;
    *out = def;
    if (!query_param(req, res, key, &text))
        return false;
    if (text == NULL)
        return true;
    n = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || n < min || n > max) {
        snprintf(detail, sizeof(detail), "%s must be an integer from %d to %d", key, min, max);
        respond_problem(res, PROBLEM_INVALID_QUERY, detail, req->path);
        return false;
    }
    *out = (int)n;
    return true;
}

bool moment_traits_ok(struct app *app, const struct request *req, struct response *res,
                      json_t *traits)
{
    json_t *attributes = json_object_get(traits, "attributes"), *out = NULL;
    const char *params[1];
    char *text, err[API_ERR_LEN];
    enum db_status st;
    if (!json_is_object(attributes) || json_object_size(attributes) == 0)
        return true;
    text = json_dumps(traits, JSON_COMPACT);
    params[0] = text;
    st = store_call(app->pool, STMT_MOMENT_TRAIT_ERRORS, 1, params, &out, err, sizeof(err));
    free(text);
    if (st != DB_OK || !json_is_array(out)) {
        json_decref(out);
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        return false;
    }
    if (json_array_size(out) == 0) {
        json_decref(out);
        return true;
    }
    respond_validation(res, out, req->path);
    return false;
}

void respond_settings(struct response *res, enum db_status st, json_t *out, const char *err,
                      const char *member, const char *instance)
{
    json_t *invalid = st == DB_OK ? json_object_get(out, "invalid") : NULL;
    if (json_is_string(invalid)) {
        json_t *errors = json_array();
        verr_add(errors, "", member, "%s", json_string_value(invalid));
        json_decref(out);
        respond_validation(res, errors, instance);
    } else if (st != DB_OK || out == NULL) {
        json_decref(out);
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, instance);
    } else {
        respond_json(res, 200, out);
    }
}
