/*
 * activation: the change feed and webhook management. GET /v1/events pages
 * the feed after a cursor (410 cursor-expired past the retention); the
 * webhook routes create (the signing secret is answered once), list, read,
 * change and delete endpoints, list a webhook's deliveries and replay one.
 * A webhook URL is checked when it is set: http or https, and every address
 * its host resolves to public unless --webhook-allow-hosts permits it (the
 * check resolves the host: DNS I/O besides the store).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "feed.h"
#include "handlers.h"
#include "store.h"
#include "textutil.h"
#include "validate.h"
#include "webhook.h"
#include "webhook_sign.h"

#define FEED_DEFAULT_LIMIT 100
#define FEED_MAX_LIMIT 1000

void handle_events(struct app *app, const struct request *req, struct response *res)
{
    const char *after, *types;
    struct feed_cursor c;
    char types_array[512], limit_text[16], retention[16], err[API_ERR_LEN];
    const char *params[5];
    int limit;
    json_t *out = NULL;
    enum db_status st;
    if (!query_param(req, res, "after", &after) || !query_param(req, res, "types", &types) ||
        !int_param(req, res, "limit", FEED_DEFAULT_LIMIT, 1, FEED_MAX_LIMIT, &limit))
        return;
    if (after == NULL) {
        feed_cursor_start(&c);
    } else if (!feed_cursor_parse(after, &c)) {
        respond_problem(res, PROBLEM_INVALID_QUERY,
                        "after must be a cursor given by this feed (next_cursor)", req->path);
        return;
    } else if (!feed_cursor_is_start(&c) &&
               c.at < (long long)time(NULL) - app->cfg->event_retention) {
        char detail[256];
        snprintf(detail, sizeof(detail),
                 "the cursor is older than the feed's retention (%d s): events after it may "
                 "have been purged; read the feed again from its start (no 'after')",
                 app->cfg->event_retention);
        respond_problem(res, PROBLEM_CURSOR_EXPIRED, detail, req->path);
        return;
    }
    if (types != NULL &&
        !feed_types_parse(types, types_array, sizeof(types_array), err, sizeof(err))) {
        respond_problem(res, PROBLEM_INVALID_QUERY, err, req->path);
        return;
    }
    snprintf(limit_text, sizeof(limit_text), "%d", limit);
    snprintf(retention, sizeof(retention), "%d", app->cfg->event_retention);
    params[0] = c.xid;
    params[1] = c.seq;
    params[2] = types != NULL ? types_array : NULL;
    params[3] = limit_text;
    params[4] = retention;
    st = store_call(app->pool, STMT_EVENT_FEED, 5, params, &out, err, sizeof(err));
    if (st != DB_OK || out == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(out);
        return;
    }
    respond_json(res, 200, out);
}

/* The fields of a webhook body, checked; url_text etc. borrow from body. */
struct webhook_fields {
    const char *url;
    bool has_types;
    char types[512]; /* PostgreSQL array literal, or "" for every type (NULL) */
    const char *enabled; /* "true"/"false" or NULL */
    const char *description;
    bool has_segment;    /* segment_id given (null: no filter) */
    char segment_id[UUID_TEXT_LEN + 1]; /* "" for null */
};

static bool webhook_fields(struct app *app, json_t *body, bool create, struct webhook_fields *f,
                           json_t *errors)
{
    static const char *const allowed[] = {"url", "event_types", "enabled", "description",
                                          "segment_id", NULL};
    json_t *segment = json_object_get(body, "segment_id");
    json_t *url = json_object_get(body, "url"), *types = json_object_get(body, "event_types");
    json_t *enabled = json_object_get(body, "enabled"), *desc = json_object_get(body, "description");
    char err[API_ERR_LEN];
    memset(f, 0, sizeof(*f));
    reject_unknown_fields(body, allowed, "", errors);
    if (url != NULL || create) {
        if (!json_is_string(url))
            verr_add(errors, "", "url", "'url' must be an http:// or https:// URL");
        else if (!webhook_check_destination(json_string_value(url),
                                            app->cfg->webhook_allow_hosts, NULL, 0, err,
                                            sizeof(err)))
            verr_add(errors, "", "url", "%s", err);
        else
            f->url = json_string_value(url);
    }
    if (types != NULL) {
        f->has_types = true;
        if (json_is_array(types) && json_array_size(types) > 0 && json_array_size(types) <= 16) {
            size_t i, len = 1;
            json_t *t;
            bool ok = true;
            f->types[0] = '{';
            json_array_foreach(types, i, t) {
                const char *name = json_string_value(t);
                if (name == NULL || !feed_event_type_known(name, strlen(name)) ||
                    strstr(f->types, name) != NULL) {
                    ok = false;
                    break;
                }
                len += (size_t)snprintf(f->types + len, sizeof(f->types) - len, "%s%s",
                                        i > 0 ? "," : "", name);
            }
            snprintf(f->types + len, sizeof(f->types) - len, "}");
            if (!ok)
                verr_add(errors, "", "event_types",
                         "'event_types' must list distinct event types: customer.created, "
                         "customer.merged, customer.unmerged, customer.erased, "
                         "identifier.added, traits.changed, interaction.created, "
                         "consent.changed, preferences.changed, value.tier_changed, "
                         "segment.entered, segment.exited");
        } else if (!json_is_null(types)) {
            verr_add(errors, "", "event_types",
                     "'event_types' must be a non-empty array of event types, or null for "
                     "every type");
        }
    }
    if (enabled != NULL) {
        if (!json_is_boolean(enabled))
            verr_add(errors, "", "enabled", "'enabled' must be true or false");
        else
            f->enabled = json_is_true(enabled) ? "true" : "false";
    }
    if (segment != NULL) {
        f->has_segment = true;
        if (!json_is_null(segment) &&
            (!json_is_string(segment) || !uuid_canonical(json_string_value(segment), f->segment_id)))
            verr_add(errors, "", "segment_id", "'segment_id' must be a segment's id (a UUID), or "
                     "null for the events of every customer");
    }
    if (desc != NULL) {
        if (!json_is_string(desc) || utf8_length(json_string_value(desc)) > 200)
            verr_add(errors, "", "description", "'description' must be a string of at most 200 "
                     "characters");
        else
            f->description = json_string_value(desc);
    }
    return json_array_size(errors) == 0;
}

/* 422 for a segment_id that names no segment. */
static void no_segment(struct response *res, const char *path)
{
    json_t *errors = json_array();
    verr_add(errors, "", "segment_id", "there is no segment with this id");
    respond_validation(res, errors, path);
}

void handle_webhook_create(struct app *app, const struct request *req, struct response *res)
{
    struct webhook_fields f;
    json_t *errors = json_array(), *out = NULL;
    char id[UUID_TEXT_LEN + 1], secret[WEBHOOK_SECRET_LEN + 1], err[API_ERR_LEN];
    const char *params[7];
    enum db_status st;
    if (!webhook_fields(app, req->body, true, &f, errors)) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    if (!webhook_secret_new(secret)) {
        respond_problem(res, PROBLEM_INTERNAL, "no random source", req->path);
        return;
    }
    uuid_new(id);
    params[0] = id;
    params[1] = f.url;
    params[2] = f.has_types && f.types[0] != '\0' ? f.types : NULL;
    params[3] = f.enabled != NULL ? f.enabled : "true";
    params[4] = f.description != NULL ? f.description : "";
    params[5] = secret;
    params[6] = f.segment_id[0] != '\0' ? f.segment_id : NULL;
    st = store_call(app->pool, STMT_WEBHOOK_CREATE, 7, params, &out, err, sizeof(err));
    if (st == DB_OK && out == NULL) { /* the row is only made with its segment */
        no_segment(res, req->path);
        return;
    }
    if (st != DB_OK || out == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(out);
        return;
    }
    json_object_set_new(out, "secret", json_string(secret));
    snprintf(res->content_location, sizeof(res->content_location), "/v1/webhooks/%s", id);
    respond_json(res, 201, out);
}

void handle_webhook_update(struct app *app, const struct request *req, struct response *res)
{
    struct webhook_fields f;
    json_t *errors = json_array(), *out = NULL;
    char err[API_ERR_LEN];
    const char *params[8];
    enum db_status st;
    if (!webhook_fields(app, req->body, false, &f, errors)) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    params[0] = req->match->id;
    params[1] = f.url;
    params[2] = f.has_types ? "true" : "false";
    params[3] = f.has_types && f.types[0] != '\0' ? f.types : NULL;
    params[4] = f.enabled;
    params[5] = f.description;
    params[6] = f.has_segment ? "true" : "false";
    params[7] = f.segment_id[0] != '\0' ? f.segment_id : NULL;
    st = store_call(app->pool, STMT_WEBHOOK_UPDATE, 8, params, &out, err, sizeof(err));
    if (st == DB_OK && json_is_true(json_object_get(out, "no_segment"))) {
        json_decref(out);
        no_segment(res, req->path);
        return;
    }
    respond_found(res, st, out, err, "no webhook with this id", req->path);
}

void handle_webhook_simple(struct app *app, const struct request *req, struct response *res)
{
    json_t *out = NULL;
    char err[API_ERR_LEN];
    const char *params[1] = {req->match->id};
    enum db_status st;
    switch (req->match->route) {
    case ROUTE_WEBHOOK_LIST:
        st = store_call(app->pool, STMT_WEBHOOK_LIST, 0, NULL, &out, err, sizeof(err));
        break;
    case ROUTE_WEBHOOK_DELETE:
        st = store_call(app->pool, STMT_WEBHOOK_DELETE, 1, params, &out, err, sizeof(err));
        if (st == DB_OK && !json_is_true(json_object_get(out, "deleted"))) {
            json_decref(out);
            out = NULL;
        }
        break;
    default:
        st = store_call(app->pool, STMT_WEBHOOK_GET, 1, params, &out, err, sizeof(err));
        break;
    }
    respond_found(res, st, out, err, "no webhook with this id", req->path);
}

void handle_webhook_deliveries(struct app *app, const struct request *req, struct response *res)
{
    const char *status;
    char limit_text[16], err[API_ERR_LEN];
    const char *params[3];
    int limit;
    json_t *out = NULL;
    enum db_status st;
    if (!query_param(req, res, "status", &status) ||
        !int_param(req, res, "limit", 100, 1, 1000, &limit))
        return;
    if (status != NULL && strcmp(status, "pending") != 0 && strcmp(status, "delivered") != 0 &&
        strcmp(status, "dead") != 0) {
        respond_problem(res, PROBLEM_INVALID_QUERY,
                        "status must be one of: pending, delivered, dead", req->path);
        return;
    }
    snprintf(limit_text, sizeof(limit_text), "%d", limit);
    params[0] = req->match->id;
    params[1] = status;
    params[2] = limit_text;
    st = store_call(app->pool, STMT_WEBHOOK_DELIVERIES, 3, params, &out, err, sizeof(err));
    respond_found(res, st, out, err, "no webhook with this id", req->path);
}

void handle_webhook_replay(struct app *app, const struct request *req, struct response *res)
{
    static const char *const allowed[] = {"delivery_id", NULL};
    json_t *errors = json_array(), *id = json_object_get(req->body, "delivery_id"), *out = NULL;
    char delivery[32], err[API_ERR_LEN];
    const char *params[2];
    enum db_status st;
    reject_unknown_fields(req->body, allowed, "", errors);
    if (!json_is_integer(id) || json_integer_value(id) < 1)
        verr_add(errors, "", "delivery_id", "'delivery_id' must be a delivery's id (an integer)");
    if (json_array_size(errors) > 0) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    snprintf(delivery, sizeof(delivery), "%lld", (long long)json_integer_value(id));
    params[0] = req->match->id;
    params[1] = delivery;
    st = store_call(app->pool, STMT_WEBHOOK_REPLAY, 2, params, &out, err, sizeof(err));
    if (st != DB_OK) {
        respond_db_failure(res, st, err, req->path);
    } else if (out == NULL) {
        respond_problem(res, PROBLEM_NOT_FOUND, "this webhook has no delivery with this id",
                        req->path);
    } else if (strcmp(json_string_value(json_object_get(out, "status")), "pending") == 0) {
        json_decref(out);
        respond_problem(res, PROBLEM_CONFLICT,
                        "the delivery is still pending: it will be attempted again anyway",
                        req->path);
    } else {
        json_t *doc = json_incref(json_object_get(out, "delivery"));
        json_decref(out);
        respond_json(res, 202, doc);
    }
}
