/*
 * identity: keeping the identity graph safe. Merge history per customer;
 * admin merge on demand (with dry_run: the resulting profile and conflicts,
 * nothing written) and unmerge; the blocked placeholder values and the
 * per-kind identifier limits that crm.resolve applies; and the log of
 * requests that were not merged because of those limits. The identity
 * rules an administrator sets by hand: detaching one identifier from a
 * customer (moved to a new customer with the interactions it brought, or
 * deleted) and never-merge pairs, which resolution keeps apart
 * (docs/identity.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "normalize.h"
#include "store.h"
#include "textutil.h"
#include "validate.h"

static const char *uuid_field(json_t *body, const char *key, char out[UUID_TEXT_LEN + 1],
                              json_t *errors)
{
    json_t *v = json_object_get(body, key);
    if (!json_is_string(v) || !uuid_canonical(json_string_value(v), out)) {
        verr_add(errors, "", key, "'%s' must be a customer UUID", key);
        return NULL;
    }
    return out;
}

static const char *optional_text(json_t *body, const char *key, size_t max, const char *def,
                                 json_t *errors)
{
    json_t *v = json_object_get(body, key);
    if (v == NULL)
        return def;
    if (!json_is_string(v) || utf8_length(json_string_value(v)) < 1 ||
        utf8_length(json_string_value(v)) > max) {
        verr_add(errors, "", key, "'%s' must be a string of 1 to %zu characters", key, max);
        return def;
    }
    return json_string_value(v);
}

static bool optional_bool(json_t *body, const char *key, json_t *errors)
{
    json_t *v = json_object_get(body, key);
    if (v != NULL && !json_is_boolean(v))
        verr_add(errors, "", key, "'%s' must be true or false", key);
    return json_is_true(v);
}

/* Run a statement and answer 200 with its JSON, 404 (not_found_detail) when it is NULL. */
static void answer(struct app *app, const struct request *req, struct response *res,
                   enum store_stmt statement, int n, const char *const *params,
                   const char *not_found_detail)
{
    json_t *out = NULL;
    char err[API_ERR_LEN];
    enum db_status st = store_call(app->pool, statement, n, params, &out, err, sizeof(err));
    if (st != DB_OK)
        respond_db_failure(res, st, err, req->path);
    else if (out == NULL)
        respond_problem(res, PROBLEM_NOT_FOUND, not_found_detail, req->path);
    else if (!respond_if_gone(res, out, req->path))
        respond_json(res, 200, out);
}

static void actor_of(const struct request *req, char *out, size_t cap)
{
    snprintf(out, cap, "key:%s", req->who ? req->who->key_id : "-");
}

void handle_merge(struct app *app, const struct request *req, struct response *res)
{
    static const char *const allowed[] = {"survivor_id", "absorbed_id", "reason", "dry_run",
                                          "force", NULL};
    json_t *errors = json_array(), *out = NULL;
    char sid[UUID_TEXT_LEN + 1], aid[UUID_TEXT_LEN + 1], actor[64], err[API_ERR_LEN];
    const char *reason, *status, *params[6];
    bool dry_run, force;
    enum db_status st;

    reject_unknown_fields(req->body, allowed, "", errors);
    uuid_field(req->body, "survivor_id", sid, errors);
    uuid_field(req->body, "absorbed_id", aid, errors);
    reason = optional_text(req->body, "reason", 200, "manual merge", errors);
    dry_run = optional_bool(req->body, "dry_run", errors);
    force = optional_bool(req->body, "force", errors);
    if (json_array_size(errors) > 0) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    actor_of(req, actor, sizeof(actor));
    params[0] = sid;
    params[1] = aid;
    params[2] = actor;
    params[3] = reason;
    params[4] = dry_run ? "true" : "false";
    params[5] = force ? "true" : "false";
    st = store_call(app->pool, STMT_MANUAL_MERGE, 6, params, &out, err, sizeof(err));
    if (st != DB_OK || out == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(out);
        return;
    }
    status = json_string_value(json_object_get(out, "status"));
    if (strcmp(status, "not_found") == 0) {
        json_decref(out);
        respond_problem(res, PROBLEM_NOT_FOUND, "no customer with one of these ids", req->path);
    } else if (strcmp(status, "same_customer") == 0) {
        json_decref(out);
        respond_problem(res, PROBLEM_CONFLICT, "both ids already belong to one customer",
                        req->path);
    } else if (strcmp(status, "conflict") == 0) {
        bool rule = json_array_size(json_object_get(out, "never_merge")) > 0;
        respond_problem(res, PROBLEM_CONFLICT,
                        rule ? "a never-merge rule keeps these customers apart; "
                               "send \"force\": true to merge anyway"
                             : "the merged customer would exceed identifier limits; "
                               "send \"force\": true to merge anyway",
                        req->path);
        json_object_set(res->body, "never_merge", json_object_get(out, "never_merge"));
        json_object_set(res->body, "limit_violations", json_object_get(out, "limit_violations"));
        json_object_set(res->body, "trait_conflicts", json_object_get(out, "trait_conflicts"));
        json_decref(out);
    } else {
        respond_json(res, 200, out);
    }
}

void handle_unmerge(struct app *app, const struct request *req, struct response *res)
{
    static const char *const allowed[] = {"customer_id", "reason", NULL};
    json_t *errors = json_array(), *out = NULL;
    char cid[UUID_TEXT_LEN + 1], actor[64], err[API_ERR_LEN];
    const char *params[3];
    enum db_status st;

    reject_unknown_fields(req->body, allowed, "", errors);
    uuid_field(req->body, "customer_id", cid, errors);
    params[2] = optional_text(req->body, "reason", 200, "manual unmerge", errors);
    if (json_array_size(errors) > 0) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    actor_of(req, actor, sizeof(actor));
    params[0] = cid;
    params[1] = actor;
    st = store_call(app->pool, STMT_UNMERGE, 3, params, &out, err, sizeof(err));
    if (st != DB_OK || out == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(out);
    } else if (strcmp(json_string_value(json_object_get(out, "status")), "unmerged") != 0) {
        json_decref(out);
        respond_problem(res, PROBLEM_CONFLICT, "this customer is not merged into another",
                        req->path);
    } else {
        respond_json(res, 200, out);
    }
}

/* Blocked values are stored lower-cased and normalised like identifiers of
 * their kind ('*' for every kind: trimmed and lower-cased only). */
static bool blocked_value(const char *kind_name, const char *value, char *out, size_t cap,
                          char *why, size_t whylen)
{
    enum id_kind kind;
    struct identifier id;
    if (strcmp(kind_name, "*") == 0) {
        size_t n = 0;
        while (*value == ' ')
            value++;
        for (; *value && n + 1 < cap; value++)
            out[n++] = (char)(*value >= 'A' && *value <= 'Z' ? *value - 'A' + 'a' : *value);
        while (n > 0 && out[n - 1] == ' ')
            n--;
        out[n] = '\0';
        if (n == 0)
            snprintf(why, whylen, "value must not be empty");
        return n > 0;
    }
    if (!id_kind_parse(kind_name, &kind)) {
        snprintf(why, whylen, "kind must be '*' or one of: %s", id_kind_list());
        return false;
    }
    if (!identifier_normalize(kind, kind == ID_EXTERNAL ? "any" : NULL, value, &id, why, whylen,
                              NULL))
        return false;
    for (char *p = id.value; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    snprintf(out, cap, "%s", id.value);
    return true;
}

/* A pattern: a regular expression of 1 to ID_VALUE_MAX bytes, stored as
 * written (crm.block_identifier checks that it compiles). */
static bool blocked_pattern(const char *value, char *out, size_t cap, char *why, size_t whylen)
{
    size_t n = strlen(value);
    if (n == 0 || n > ID_VALUE_MAX || n >= cap) {
        snprintf(why, whylen, "a pattern must be 1 to %d characters", ID_VALUE_MAX);
        return false;
    }
    memcpy(out, value, n + 1);
    return true;
}

void handle_blocked_add(struct app *app, const struct request *req, struct response *res)
{
    static const char *const allowed[] = {"kind", "value", "reason", "pattern", NULL};
    json_t *errors = json_array(), *kind = json_object_get(req->body, "kind");
    json_t *value = json_object_get(req->body, "value"), *out = NULL;
    json_t *pattern_v = json_object_get(req->body, "pattern");
    char normalised[ID_VALUE_MAX + 1], why[160], err[API_ERR_LEN];
    const char *params[4];
    bool pattern = json_is_true(pattern_v);
    enum db_status st;

    reject_unknown_fields(req->body, allowed, "", errors);
    params[2] = optional_text(req->body, "reason", 200, "blocked by an administrator", errors);
    if (pattern_v != NULL && !json_is_boolean(pattern_v))
        verr_add(errors, "", "pattern", "'pattern' must be true or false");
    if (!json_is_string(kind) ||
        (pattern && strcmp(json_string_value(kind), "*") != 0 &&
         !id_kind_parse(json_string_value(kind), &(enum id_kind){0})))
        verr_add(errors, "", "kind", "'kind' must be '*' or an identifier kind");
    if (!json_is_string(value))
        verr_add(errors, "", "value", "'value' must be a string");
    else if (pattern && !blocked_pattern(json_string_value(value), normalised,
                                         sizeof(normalised), why, sizeof(why)))
        verr_add(errors, "", "value", "%s", why);
    else if (!pattern && json_is_string(kind) &&
             !blocked_value(json_string_value(kind), json_string_value(value), normalised,
                            sizeof(normalised), why, sizeof(why)))
        verr_add(errors, "", "value", "%s", why);
    if (json_array_size(errors) > 0) {
        respond_validation(res, errors, req->path);
        return;
    }
    params[0] = json_string_value(kind);
    params[1] = normalised;
    params[3] = pattern ? "true" : "false";
    st = store_call(app->pool, STMT_BLOCKED_ADD, 4, params, &out, err, sizeof(err));
    if (st != DB_OK || out == NULL) {
        json_decref(errors);
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(out);
        return;
    }
    if (json_is_string(json_object_get(out, "invalid"))) {
        verr_add(errors, "", "value", "not a valid regular expression: %s",
                 json_string_value(json_object_get(out, "invalid")));
        json_decref(out);
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    respond_json(res, 201, out);
}

void handle_blocked_remove(struct app *app, const struct request *req,
                           struct response *res)
{
    const char *kind, *value, *params[2];
    char normalised[ID_VALUE_MAX + 1], why[160];
    json_t *out = NULL;
    char err[API_ERR_LEN];
    enum db_status st;
    const char *pattern;
    if (!query_param(req, res, "kind", &kind) || !query_param(req, res, "value", &value) ||
        !query_param(req, res, "pattern", &pattern))
        return;
    if (pattern != NULL && strcmp(pattern, "true") != 0 && strcmp(pattern, "false") != 0) {
        respond_problem(res, PROBLEM_INVALID_QUERY, "pattern must be true or false", req->path);
        return;
    }
    if (kind == NULL || value == NULL ||
        !(pattern != NULL && strcmp(pattern, "true") == 0
              ? blocked_pattern(value, normalised, sizeof(normalised), why, sizeof(why))
              : blocked_value(kind, value, normalised, sizeof(normalised), why, sizeof(why)))) {
        respond_problem(res, PROBLEM_INVALID_QUERY,
                        "give kind ('*' or an identifier kind) and a valid value", req->path);
        return;
    }
    params[0] = kind;
    params[1] = normalised;
    st = store_call(app->pool, STMT_BLOCKED_REMOVE, 2, params, &out, err, sizeof(err));
    if (st != DB_OK)
        respond_db_failure(res, st, err, req->path);
    else if (!json_is_true(json_object_get(out, "deleted"))) {
        json_decref(out);
        respond_problem(res, PROBLEM_NOT_FOUND, "this value is not blocked", req->path);
    } else {
        respond_json(res, 200, out);
    }
}

void handle_limits_set(struct app *app, const struct request *req, struct response *res)
{
    static const char *const allowed[] = {"kind", "max_per_customer", "priority", NULL};
    json_t *errors = json_array(), *kind = json_object_get(req->body, "kind"), *v;
    enum id_kind k;
    char max[16], prio[16];
    const char *params[3] = {NULL, NULL, NULL};

    reject_unknown_fields(req->body, allowed, "", errors);
    if (!json_is_string(kind) || !id_kind_parse(json_string_value(kind), &k))
        verr_add(errors, "", "kind", "'kind' must be one of: %s", id_kind_list());
    if ((v = json_object_get(req->body, "max_per_customer")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000)
            verr_add(errors, "", "max_per_customer", "'max_per_customer' must be 1 to 1000");
        snprintf(max, sizeof(max), "%lld", (long long)json_integer_value(v));
        params[1] = max;
    }
    if ((v = json_object_get(req->body, "priority")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 100)
            verr_add(errors, "", "priority", "'priority' must be 1 to 100");
        snprintf(prio, sizeof(prio), "%lld", (long long)json_integer_value(v));
        params[2] = prio;
    }
    if (json_array_size(errors) > 0) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    params[0] = json_string_value(kind);
    answer(app, req, res, STMT_LIMITS_SET, 3, params, "no limit for this kind");
}

void handle_customer_merges(struct app *app, const struct request *req, struct response *res)
{
    const char *audited[3] = {req->match->id, req->who->key_id, role_name(req->who->role)};
    answer(app, req, res, STMT_MERGE_HISTORY, 3, audited, "no customer with this id");
}

void handle_blocked_list(struct app *app, const struct request *req, struct response *res)
{
    answer(app, req, res, STMT_BLOCKED_LIST, 0, NULL, "");
}

void handle_limits_get(struct app *app, const struct request *req, struct response *res)
{
    answer(app, req, res, STMT_LIMITS_GET, 0, NULL, "");
}

void handle_conflicts_list(struct app *app, const struct request *req, struct response *res)
{
    const char *params[1];
    char limit_text[16];
    int n;
    if (!int_param(req, res, "limit", 100, 1, 500, &n))
        return;
    snprintf(limit_text, sizeof(limit_text), "%d", n);
    params[0] = limit_text;
    answer(app, req, res, STMT_CONFLICTS_LIST, 1, params, "");
}

/* ---- identity rules ------------------------------------------------------------ */

void handle_identifier_detach(struct app *app, const struct request *req, struct response *res)
{
    static const char *const allowed[] = {"identifier", "mode", "reason", "never_merge", NULL};
    json_t *errors = json_array(), *mode_v = json_object_get(req->body, "mode");
    json_t *ids_json, *out = NULL;
    struct identifier_list one = {.count = 0};
    char new_id[UUID_TEXT_LEN + 1], actor[64], err[API_ERR_LEN], *id_text = NULL;
    const char *params[7], *status;
    enum db_status st;
    bool never = true;

    reject_unknown_fields(req->body, allowed, "", errors);
    if (json_object_get(req->body, "never_merge") != NULL)
        never = optional_bool(req->body, "never_merge", errors);
    if (json_object_get(req->body, "identifier") == NULL)
        verr_add(errors, "", "identifier", "'identifier' is required: {kind, namespace?, value}");
    else if (validate_identifier(json_object_get(req->body, "identifier"), "/identifier",
                                 &one.items[0], errors))
        one.count = 1;
    if (!json_is_string(mode_v) || !detach_mode_valid(json_string_value(mode_v)))
        verr_add(errors, "", "mode", "'mode' must be one of: %s", detach_mode_list());
    params[5] = optional_text(req->body, "reason", 200, "identifier detached", errors);
    if (json_array_size(errors) > 0) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    ids_json = identifiers_to_json(&one);
    id_text = json_dumps(json_array_get(ids_json, 0), JSON_COMPACT);
    json_decref(ids_json);
    uuid_new(new_id);
    actor_of(req, actor, sizeof(actor));
    params[0] = req->match->id;
    params[1] = id_text;
    params[2] = json_string_value(mode_v);
    params[3] = new_id;
    params[4] = actor;
    params[6] = never ? "true" : "false";
    st = store_call(app->pool, STMT_IDENTIFIER_DETACH, 7, params, &out, err, sizeof(err));
    free(id_text);
    if (st != DB_OK || out == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(out);
        return;
    }
    if (respond_if_gone(res, out, req->path))
        return;
    status = json_string_value(json_object_get(out, "status"));
    if (status != NULL && strcmp(status, "detached") == 0) {
        respond_json(res, 200, out);
        return;
    }
    respond_problem(res, PROBLEM_NOT_FOUND,
                    status != NULL && strcmp(status, "not_attached") == 0
                        ? "this customer has no such identifier"
                        : "no customer with this id",
                    req->path);
    json_decref(out);
}

void handle_never_merge_add(struct app *app, const struct request *req, struct response *res)
{
    static const char *const allowed[] = {"customer_id", "other_id", "reason", NULL};
    json_t *errors = json_array(), *out = NULL;
    char a[UUID_TEXT_LEN + 1], b[UUID_TEXT_LEN + 1], actor[64], err[API_ERR_LEN];
    const char *params[4], *status;
    bool ok_a, ok_b;
    enum db_status st;

    reject_unknown_fields(req->body, allowed, "", errors);
    ok_a = uuid_field(req->body, "customer_id", a, errors) != NULL;
    ok_b = uuid_field(req->body, "other_id", b, errors) != NULL;
    if (ok_a && ok_b && strcmp(a, b) == 0)
        verr_add(errors, "", "other_id", "'other_id' must name another customer");
    params[3] = optional_text(req->body, "reason", 200, "never merge", errors);
    if (json_array_size(errors) > 0) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    actor_of(req, actor, sizeof(actor));
    params[0] = a;
    params[1] = b;
    params[2] = actor;
    st = store_call(app->pool, STMT_NEVER_MERGE_ADD, 4, params, &out, err, sizeof(err));
    if (st != DB_OK || out == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(out);
        return;
    }
    status = json_string_value(json_object_get(out, "status"));
    if (strcmp(status, "created") == 0 || strcmp(status, "exists") == 0) {
        json_t *rule = json_incref(json_object_get(out, "rule"));
        bool created = strcmp(status, "created") == 0;
        json_decref(out);
        respond_json(res, created ? 201 : 200, rule);
        return;
    }
    if (strcmp(status, "same_customer") == 0)
        respond_problem(res, PROBLEM_CONFLICT,
                        "both ids are one customer now: unmerge them first", req->path);
    else
        respond_problem(res, PROBLEM_NOT_FOUND, "no customer with one of these ids", req->path);
    json_decref(out);
}

/* The optional (list) or required (remove) customer id query parameters. */
static bool uuid_query(const struct request *req, struct response *res, const char *key,
                       bool required, char out[UUID_TEXT_LEN + 1], const char **value)
{
    const char *v;
    char detail[96];
    if (!query_param(req, res, key, &v))
        return false;
    if ((v == NULL && required) || (v != NULL && !uuid_canonical(v, out))) {
        snprintf(detail, sizeof(detail), "%s must be a customer UUID", key);
        respond_problem(res, PROBLEM_INVALID_QUERY, detail, req->path);
        return false;
    }
    *value = v != NULL ? out : NULL;
    return true;
}

void handle_never_merge_list(struct app *app, const struct request *req, struct response *res)
{
    char id[UUID_TEXT_LEN + 1];
    const char *params[1];
    if (!uuid_query(req, res, "customer_id", false, id, &params[0]))
        return;
    answer(app, req, res, STMT_NEVER_MERGE_LIST, 1, params, "");
}

void handle_never_merge_remove(struct app *app, const struct request *req, struct response *res)
{
    char a[UUID_TEXT_LEN + 1], b[UUID_TEXT_LEN + 1], err[API_ERR_LEN];
    const char *params[2];
    json_t *out = NULL;
    enum db_status st;
    if (!uuid_query(req, res, "customer_id", true, a, &params[0]) ||
        !uuid_query(req, res, "other_id", true, b, &params[1]))
        return;
    st = store_call(app->pool, STMT_NEVER_MERGE_REMOVE, 2, params, &out, err, sizeof(err));
    if (st != DB_OK || out == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(out);
    } else if (!json_is_true(json_object_get(out, "deleted"))) {
        json_decref(out);
        respond_problem(res, PROBLEM_NOT_FOUND, "no never-merge rule on these customers",
                        req->path);
    } else {
        respond_json(res, 200, out);
    }
}
