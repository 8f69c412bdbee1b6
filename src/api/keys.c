/*
 * keys: API-key management for admins: create (the key is shown once and
 * stored as a SHA-256 hash), list, revoke (both writes audited; a revoked
 * key leaves this server's key cache at once); and GET /v1/me, any key's
 * own id, name and role.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "handlers.h"
#include "normalize.h"
#include "segment.h"
#include "store.h"
#include "validate.h"

/* shared_fields of a partner key: 1 to AUDIENCE_FIELDS_MAX distinct names of
 * the audience field list (segment.h). */
static bool shared_fields_valid(json_t *shared, json_t *errors)
{
    unsigned int seen = 0, one;
    size_t i;
    json_t *v;
    char err[512];
    if (!json_is_array(shared) || json_array_size(shared) < 1) {
        verr_add(errors, "", "shared_fields",
                 "'shared_fields' must be a non-empty array of field names, of: %s",
                 audience_field_list());
        return false;
    }
    json_array_foreach(shared, i, v) {
        char index[24];
        snprintf(index, sizeof(index), "%zu", i);
        if (!json_is_string(v) || strchr(json_string_value(v), ',') != NULL ||
            strlen(json_string_value(v)) != json_string_length(v) ||
            !audience_fields_parse(json_string_value(v), &one, err, sizeof(err))) {
            verr_add(errors, "/shared_fields", index, "unknown field; one of: %s",
                     audience_field_list());
            return false;
        }
        if (seen & one) {
            verr_add(errors, "/shared_fields", index, "'%s' is listed twice",
                     json_string_value(v));
            return false;
        }
        seen |= one;
    }
    return true;
}

void handle_key_create(struct app *app, const struct request *req, struct response *res)
{
    json_t *errors = json_array(), *name = json_object_get(req->body, "name");
    json_t *role_v = json_object_get(req->body, "role"), *ns_v = json_object_get(req->body, "namespace");
    static const char *const allowed[] = {"name", "role", "namespace", "shared_fields", NULL};
    json_t *shared = json_object_get(req->body, "shared_fields");
    json_t *out = NULL;
    char *shared_text = NULL;
    enum role role = ROLE_FRONT_OFFICE;
    struct identifier probe;
    char key[API_KEY_LEN + 1], key_id[UUID_TEXT_LEN + 1], err[API_ERR_LEN];
    const char *params[7];
    enum db_status st;

    reject_unknown_fields(req->body, allowed, "", errors);
    if (!json_is_string(name) || utf8_length(json_string_value(name)) < 1 ||
        utf8_length(json_string_value(name)) > 100)
        verr_add(errors, "", "name", "'name' must be a string of 1 to 100 characters");
    if (!json_is_string(role_v) || !role_parse(json_string_value(role_v), &role))
        verr_add(errors, "", "role",
                 "'role' must be one of: front_office, call_center, marketing, partner, admin");
    else if (role == ROLE_PARTNER) {
        /* The namespace follows the identifier rules, so it can match external ids. */
        if (!json_is_string(ns_v) ||
            !identifier_normalize(ID_EXTERNAL, json_string_value(ns_v), "x", &probe, err,
                                  sizeof(err), NULL))
            verr_add(errors, "", "namespace",
                     "partner keys need a 'namespace' of 1 to 64 characters a-z, 0-9, '_', '.', '-'");
    } else if (ns_v != NULL) {
        verr_add(errors, "", "namespace", "only partner keys have a 'namespace'");
    }
    if (shared != NULL && json_is_string(role_v) && role != ROLE_PARTNER)
        verr_add(errors, "", "shared_fields", "only partner keys have 'shared_fields'");
    else if (shared != NULL)
        shared_fields_valid(shared, errors);
    if (json_array_size(errors) > 0) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    if (!api_key_generate(key, key_id)) {
        respond_problem(res, PROBLEM_INTERNAL, "no random source", req->path);
        return;
    }
    params[0] = key_id;
    params[1] = key;
    params[2] = json_string_value(name);
    params[3] = role_name(role);
    params[4] = role == ROLE_PARTNER ? probe.namespace_ : NULL;
    params[5] = req->who->key_id;
    shared_text = shared != NULL ? json_dumps(shared, JSON_COMPACT) : NULL;
    params[6] = shared_text;
    st = store_call(app->pool, STMT_KEY_CREATE, 7, params, &out, err, sizeof(err));
    free(shared_text);
    if (st != DB_OK || out == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(out);
        return;
    }
    json_object_set_new(out, "api_key", json_string(key));
    respond_json(res, 201, out);
}

void handle_key_list_or_revoke(struct app *app, const struct request *req,
                               struct response *res)
{
    json_t *out = NULL;
    char err[API_ERR_LEN];
    enum db_status st;
    if (req->match->route == ROUTE_KEY_LIST) {
        st = store_call(app->pool, STMT_KEY_LIST, 0, NULL, &out, err, sizeof(err));
    } else {
        const char *params[2] = {req->match->id, req->who->key_id};
        st = store_call(app->pool, STMT_KEY_REVOKE, 2, params, &out, err, sizeof(err));
        /* this server stops taking the key at once (others within their cache time) */
        if (st == DB_OK && out != NULL)
            access_forget(app->access, req->match->id);
    }
    respond_found(res, st, out, err, "no key with this id", req->path);
}

/* GET /v1/me: the caller's own key (id, name, role, a partner's namespace),
 * read from the database rather than the key cache, so that a key revoked
 * on any instance is answered 401 here at once (the console signs out). */
void handle_me(struct app *app, const struct request *req, struct response *res)
{
    json_t *out = NULL;
    char err[API_ERR_LEN];
    const char *params[1] = {req->who->key_id};
    enum db_status st = store_call(app->pool, STMT_KEY_ME, 1, params, &out, err, sizeof(err));
    if (st == DB_OK && out == NULL) {
        respond_problem(res, PROBLEM_UNAUTHORIZED, "this API key has been revoked", req->path);
        res->auth_challenge = true;
        return;
    }
    respond_found(res, st, out, err, "no such key", req->path);
}
