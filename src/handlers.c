/*
 * handlers: one function per route, dispatched by handle_request. The
 * pattern is always validate -> store -> shape the answer; database
 * failures become 503 (unreachable, with Retry-After) or 500 (bug, logged).
 */
#include "handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "store.h"
#include "textutil.h"
#include "validate.h"

#define DB_ERR_LEN 512

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
        fprintf(stderr, "error: %s: %s\n", instance, err);
        respond_problem(res, PROBLEM_SERVICE_UNAVAILABLE,
                        "the request was cancelled (it ran past the statement timeout, or the "
                        "server is shutting down); nothing was changed; retry",
                        instance);
    } else {
        fprintf(stderr, "error: %s: %s\n", instance, err);
        respond_problem(res, PROBLEM_INTERNAL, "the request could not be completed", instance);
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
    const char *v = req->query(req->query_ctx, key);
    *value = NULL;
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
static bool partner_scope_ok(const struct principal *who, bool by_customer_id,
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

static const char PARTNER_SCOPE[] =
    "partner keys may only use identifiers of kind 'external' in their own namespace, "
    "and may not write traits";

/* True (and res filled with a 422) when every identifier was a blocked placeholder. */
static bool respond_if_blocked(json_t *out, const char *prefix, const char *path,
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

static void handle_health(const struct request *req, struct response *res)
{
    respond_json(res, 200, json_pack("{s:s}", "status", "ok"));
}

/* A fixed text body handed out through the streaming interface. */
struct text_body {
    char *text;
    size_t len, off;
};

static long text_read(void *ctx, char *buf, size_t max)
{
    struct text_body *t = ctx;
    size_t n = t->len - t->off;
    if (n > max)
        n = max;
    memcpy(buf, t->text + t->off, n);
    t->off += n;
    return (long)n;
}

static void text_free(void *ctx)
{
    struct text_body *t = ctx;
    free(t->text);
    free(t);
}

static void handle_metrics(struct app *app, struct response *res)
{
    struct text_body *t = calloc(1, sizeof(*t));
    t->text = metrics_render(app->pool, app->audit);
    t->len = strlen(t->text);
    res->status = 200;
    res->stream_content_type = "text/plain; version=0.0.4; charset=utf-8";
    res->stream_read = text_read;
    res->stream_free = text_free;
    res->stream_ctx = t;
}

/* From memory (health.c): the database as last checked, at most a second
 * ago, and whether the server is stopping. Never waits for the database. */
static void handle_ready(struct app *app, const struct request *req, struct response *res)
{
    if (health_stopping(app->health))
        respond_problem(res, PROBLEM_SERVICE_UNAVAILABLE, "the server is shutting down",
                        req->path);
    else if (!health_database_ok(app->health))
        respond_problem(res, PROBLEM_SERVICE_UNAVAILABLE, "the database is unreachable",
                        req->path);
    else
        respond_json(res, 200, json_pack("{s:s}", "status", "ready"));
}

static void handle_resolve(struct app *app, const struct request *req, struct response *res)
{
    struct resolve_request rr;
    json_t *errors = json_array(), *out = NULL;
    char err[DB_ERR_LEN];
    enum db_status st;
    if (!validate_resolve(req->body, &rr, errors)) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    if (!partner_scope_ok(req->who, false, &rr.ids) ||
        (req->who != NULL && req->who->role == ROLE_PARTNER && rr.traits != NULL)) {
        respond_problem(res, PROBLEM_FORBIDDEN, PARTNER_SCOPE, req->path);
        return;
    }
    st = store_resolve(app->pool, &rr, &out, err, sizeof(err));
    if (st != DB_OK || out == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(out);
        return;
    }
    if (respond_if_blocked(out, "", req->path, res)) {
        json_decref(out);
        return;
    }
    if (req->who != NULL && req->who->role == ROLE_PARTNER)
        json_object_del(out, "customer"); /* no cross-partner data in the profile */
    respond_json(res, json_is_true(json_object_get(out, "created")) ? 201 : 200, out);
}

static void set_profile_response(struct response *res, json_t *profile)
{
    json_t *survivor = json_object_get(profile, "merged_into");
    if (json_is_string(survivor))
        snprintf(res->content_location, sizeof(res->content_location), "/v1/customers/%s",
                 json_string_value(survivor));
    respond_json(res, 200, profile);
}

/* A profile read's answer: 404, 410, or the audited document as is. */
static void respond_profile_text(struct app *app, const struct request *req, struct response *res,
                                 struct profile_text *p, const char *action,
                                 const char *not_found)
{
    if (p->doc == NULL) {
        respond_problem(res, PROBLEM_NOT_FOUND, not_found, req->path);
    } else if (p->gone) {
        json_t *doc = json_loads(p->doc, 0, NULL);
        if (doc == NULL || !respond_if_gone(res, doc, req->path)) {
            json_decref(doc);
            respond_problem(res, PROBLEM_INTERNAL, "the request could not be completed",
                            req->path);
        }
    } else if (audit_read_or_fail(app, req, res, action, p->customer_id)) {
        if (p->merged_into != NULL)
            snprintf(res->content_location, sizeof(res->content_location), "/v1/customers/%s",
                     p->merged_into);
        respond_raw_json(res, 200, p->doc);
        p->doc = NULL;
    }
    profile_text_clear(p);
}

static void handle_customer_get(struct app *app, const struct request *req, struct response *res)
{
    struct profile_text p;
    char err[DB_ERR_LEN];
    enum db_status st = store_profile(req->reads, req->match->id, &p, err, sizeof(err));
    if (st != DB_OK) {
        profile_text_clear(&p);
        respond_db_failure(res, st, err, req->path);
        return;
    }
    respond_profile_text(app, req, res, &p, "customer.read", "no customer with this id");
}

static void handle_traits(struct app *app, const struct request *req, struct response *res)
{
    struct traits_request tr;
    json_t *errors = json_array(), *out = NULL;
    char err[DB_ERR_LEN];
    enum db_status st;
    if (!validate_traits_request(req->body, &tr, errors)) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    st = store_patch_traits(app->pool, req->match->id, &tr, &out, err, sizeof(err));
    if (st != DB_OK)
        respond_db_failure(res, st, err, req->path);
    else if (out == NULL)
        respond_problem(res, PROBLEM_NOT_FOUND, "no customer with this id", req->path);
    else
        set_profile_response(res, out);
}

static void handle_lookup(struct app *app, const struct request *req, struct response *res)
{
    static const char *const shortcuts[] = {"email", "phone", "device", "loyalty_card"};
    const char *kind_name = NULL, *value = NULL, *ns = NULL, *v;
    enum id_kind kind;
    struct identifier id;
    char why[160], detail[256];
    struct profile_text p;
    enum db_status st;
    int given = 0;

    for (size_t i = 0; i < sizeof(shortcuts) / sizeof(shortcuts[0]); i++) {
        if (!query_param(req, res, shortcuts[i], &v))
            return;
        if (v != NULL) {
            kind_name = shortcuts[i];
            value = v;
            given++;
        }
    }
    if (!query_param(req, res, "kind", &v))
        return;
    if (v != NULL) {
        kind_name = v;
        given++;
        if (!query_param(req, res, "value", &value))
            return;
    }
    if (!query_param(req, res, "namespace", &ns))
        return;
    if (given != 1 || value == NULL) {
        respond_problem(res, PROBLEM_INVALID_QUERY,
                        "give exactly one identifier: kind=&value=[&namespace=], or one of "
                        "email=, phone=, device=, loyalty_card=",
                        req->path);
        return;
    }
    if (!id_kind_parse(kind_name, &kind)) {
        snprintf(detail, sizeof(detail), "unknown identifier kind '%.64s' (one of: %s)", kind_name,
                 id_kind_list());
        respond_problem(res, PROBLEM_INVALID_QUERY, detail, req->path);
        return;
    }
    if (!identifier_normalize(kind, ns, value, &id, why, sizeof(why), NULL)) {
        snprintf(detail, sizeof(detail), "invalid %s: %s", kind_name, why);
        respond_problem(res, PROBLEM_INVALID_QUERY, detail, req->path);
        return;
    }
    st = store_lookup(req->reads, &id, &p, why, sizeof(why));
    if (st != DB_OK) {
        profile_text_clear(&p);
        respond_db_failure(res, st, why, req->path);
        return;
    }
    respond_profile_text(app, req, res, &p, "customer.lookup", "no customer has this identifier");
}

/* Cursor = base64url("<occurred_at>|<interaction_id>"). */
static bool cursor_decode(const char *text, char *at, size_t atcap, char *id)
{
    unsigned char buf[128];
    long n = base64url_decode(text, buf, sizeof(buf));
    char *bar;
    if (n <= 0)
        return false;
    bar = strchr((char *)buf, '|');
    if (bar == NULL || (size_t)(bar - (char *)buf) >= atcap)
        return false;
    *bar = '\0';
    memcpy(at, buf, (size_t)(bar - (char *)buf) + 1);
    return rfc3339_valid(at) && uuid_canonical(bar + 1, id);
}

static char *cursor_encode(const char *at, const char *id)
{
    char buf[128];
    int n = snprintf(buf, sizeof(buf), "%s|%s", at, id);
    return base64url_encode((const unsigned char *)buf, (size_t)n);
}

static void handle_timeline(struct app *app, const struct request *req, struct response *res)
{
    struct timeline_query q = {.limit = 50};
    const char *limit, *cursor;
    char cursor_at[64], cursor_id[UUID_TEXT_LEN + 1], err[DB_ERR_LEN];
    json_t *out = NULL, *next_at, *next_id;
    enum db_status st;

    if (!query_param(req, res, "limit", &limit) || !query_param(req, res, "cursor", &cursor) ||
        !query_param(req, res, "channel", &q.channel) ||
        !query_param(req, res, "type", &q.type) || !query_param(req, res, "since", &q.since) ||
        !query_param(req, res, "until", &q.until))
        return;
    if (limit != NULL) {
        char *end;
        long n = strtol(limit, &end, 10);
        if (*limit == '\0' || *end != '\0' || n < 1 || n > 500) {
            respond_problem(res, PROBLEM_INVALID_QUERY, "limit must be an integer from 1 to 500",
                            req->path);
            return;
        }
        q.limit = (int)n;
    }
    if (cursor != NULL) {
        if (!cursor_decode(cursor, cursor_at, sizeof(cursor_at), cursor_id)) {
            respond_problem(res, PROBLEM_INVALID_QUERY, "cursor is not one this server issued",
                            req->path);
            return;
        }
        q.cursor_at = cursor_at;
        q.cursor_id = cursor_id;
    }
    if (q.channel != NULL && !channel_valid(q.channel)) {
        respond_problem(res, PROBLEM_INVALID_QUERY, "unknown channel", req->path);
        return;
    }
    if (q.type != NULL && !interaction_type_valid(q.type)) {
        respond_problem(res, PROBLEM_INVALID_QUERY, "unknown interaction type", req->path);
        return;
    }
    if ((q.since != NULL && !rfc3339_valid(q.since)) || (q.until != NULL && !rfc3339_valid(q.until))) {
        respond_problem(res, PROBLEM_INVALID_QUERY,
                        "since and until must be RFC 3339 timestamps with offset", req->path);
        return;
    }
    st = store_timeline(req->reads, req->match->id, &q, &out, err, sizeof(err));
    if (st != DB_OK) {
        respond_db_failure(res, st, err, req->path);
        return;
    }
    if (out == NULL) {
        respond_problem(res, PROBLEM_NOT_FOUND, "no customer with this id", req->path);
        return;
    }
    if (respond_if_gone(res, out, req->path))
        return;
    if (!audit_read_or_fail(app, req, res, "customer.timeline",
                            json_string_value(json_object_get(out, "customer_id")))) {
        json_decref(out);
        return;
    }
    next_at = json_object_get(out, "next_cursor_at");
    next_id = json_object_get(out, "next_cursor_id");
    if (json_is_string(next_at) && json_is_string(next_id)) {
        char *c = cursor_encode(json_string_value(next_at), json_string_value(next_id));
        json_object_set_new(out, "next_cursor", json_string(c));
        free(c);
    } else {
        json_object_set_new(out, "next_cursor", json_null());
    }
    json_object_del(out, "next_cursor_at");
    json_object_del(out, "next_cursor_id");
    respond_json(res, 200, out);
}

static void handle_interaction(struct app *app, const struct request *req, struct response *res)
{
    struct interaction_request ir;
    json_t *errors = json_array(), *out = NULL;
    char err[DB_ERR_LEN];
    enum db_status st;
    const char *status;
    bool created;

    if (!validate_interaction(req->body, "", &ir, errors)) {
        interaction_request_clear(&ir);
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    if (!partner_scope_ok(req->who, ir.by_customer_id, &ir.ids)) {
        interaction_request_clear(&ir);
        respond_problem(res, PROBLEM_FORBIDDEN, PARTNER_SCOPE, req->path);
        return;
    }
    st = store_ingest(app->pool, &ir, &out, err, sizeof(err));
    interaction_request_clear(&ir);
    if (st != DB_OK || out == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(out);
        return;
    }
    if (respond_if_blocked(out, "", req->path, res)) {
        metrics_ingest(0, 0, 1);
        json_decref(out);
        return;
    }
    status = json_string_value(json_object_get(out, "status"));
    if (status != NULL && strcmp(status, "not_found") == 0) {
        metrics_ingest(0, 0, 1);
        json_decref(out);
        respond_problem(res, PROBLEM_NOT_FOUND, "no customer with this customer_id", req->path);
        return;
    }
    created = status != NULL && strcmp(status, "created") == 0;
    metrics_ingest(created, !created, 0);
    respond_json(res, created ? 201 : 200, out);
}

static void handle_batch(struct app *app, const struct request *req, struct response *res)
{
    json_t *errors = json_array(), *items = NULL, *item, *results, *out;
    struct interaction_request *reqs, **valid;
    json_t **stored;
    size_t i, n;
    int created = 0, duplicates = 0, failed = 0;
    char err[DB_ERR_LEN];
    enum db_status st;

    if (!validate_batch_envelope(req->body, &items, errors)) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    n = json_array_size(items);
    reqs = calloc(n, sizeof(*reqs));
    valid = calloc(n, sizeof(*valid));
    stored = calloc(n, sizeof(*stored));
    results = json_array();
    json_array_foreach(items, i, item) {
        char prefix[32];
        json_t *item_errors = json_array();
        snprintf(prefix, sizeof(prefix), "/items/%zu", i);
        if (validate_interaction(item, prefix, &reqs[i], item_errors) &&
            !partner_scope_ok(req->who, reqs[i].by_customer_id, &reqs[i].ids)) {
            json_decref(item_errors);
            json_array_append_new(results,
                                  json_pack("{s:I, s:s, s:o}", "index", (json_int_t)i, "status",
                                            "failed", "problem",
                                            problem_new(PROBLEM_FORBIDDEN, PARTNER_SCOPE,
                                                        req->path)));
        } else if (json_array_size(item_errors) == 0) {
            valid[i] = &reqs[i];
            json_array_append_new(results, json_null());
            json_decref(item_errors);
        } else {
            json_array_append_new(results,
                                  json_pack("{s:I, s:s, s:o}", "index", (json_int_t)i, "status",
                                            "failed", "problem",
                                            problem_validation(item_errors, req->path)));
        }
    }
    st = store_ingest_batch(app->pool, valid, (int)n, stored, err, sizeof(err));
    if (st != DB_OK) {
        respond_db_failure(res, st, err, req->path);
        json_decref(results);
        goto done;
    }
    for (i = 0; i < n; i++) {
        const char *status;
        if (valid[i] == NULL) {
            failed++;
            continue;
        }
        status = stored[i] ? json_string_value(json_object_get(stored[i], "status")) : NULL;
        if (status != NULL && strcmp(status, "created") == 0) {
            created++;
        } else if (status != NULL && strcmp(status, "duplicate") == 0) {
            duplicates++;
        } else if (status != NULL && strcmp(status, "blocked") == 0) {
            struct response blocked = {0};
            char prefix[32];
            snprintf(prefix, sizeof(prefix), "/items/%zu", i);
            respond_if_blocked(stored[i], prefix, req->path, &blocked);
            failed++;
            json_array_set_new(results, i,
                               json_pack("{s:I, s:s, s:o}", "index", (json_int_t)i, "status",
                                         "failed", "problem", blocked.body));
            continue;
        } else {
            enum problem_kind kind = status != NULL && strcmp(status, "not_found") == 0
                                         ? PROBLEM_NOT_FOUND : PROBLEM_INTERNAL;
            failed++;
            json_array_set_new(results, i,
                               json_pack("{s:I, s:s, s:o}", "index", (json_int_t)i, "status",
                                         "failed", "problem",
                                         problem_new(kind, kind == PROBLEM_NOT_FOUND
                                                               ? "no customer with this customer_id"
                                                               : "the item could not be stored",
                                                     req->path)));
            continue;
        }
        out = json_pack("{s:I}", "index", (json_int_t)i);
        json_object_update(out, stored[i]);
        json_array_set_new(results, i, out);
    }
    metrics_ingest(created, duplicates, failed);
    respond_json(res, 200,
                 json_pack("{s:i, s:i, s:i, s:o}", "created", created, "duplicates", duplicates,
                           "failed", failed, "results", results));
done:
    for (i = 0; i < n; i++) {
        interaction_request_clear(&reqs[i]);
        json_decref(stored[i]);
    }
    free(reqs);
    free(valid);
    free(stored);
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

static void dispatch(struct app *app, const struct request *req, struct response *res);

void handle_request(struct app *app, const struct request *in, struct response *res)
{
    struct request req = *in;
    if (!choose_read_pool(app, &req, res))
        return;
    dispatch(app, &req, res);
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

static void dispatch(struct app *app, const struct request *req, struct response *res)
{
    switch (req->match->route) {
    case ROUTE_HEALTH:
        handle_health(req, res);
        break;
    case ROUTE_READY:
        handle_ready(app, req, res);
        break;
    case ROUTE_METRICS:
        handle_metrics(app, res);
        break;
    case ROUTE_CUSTOMER_RESOLVE:
        handle_resolve(app, req, res);
        break;
    case ROUTE_CUSTOMER_LOOKUP:
        handle_lookup(app, req, res);
        break;
    case ROUTE_CUSTOMER_GET:
        handle_customer_get(app, req, res);
        break;
    case ROUTE_CUSTOMER_TRAITS:
        handle_traits(app, req, res);
        break;
    case ROUTE_CUSTOMER_TIMELINE:
        handle_timeline(app, req, res);
        break;
    case ROUTE_INTERACTION_CREATE:
        handle_interaction(app, req, res);
        break;
    case ROUTE_INTERACTION_BATCH:
        handle_batch(app, req, res);
        break;
    case ROUTE_CUSTOMER_MERGES:
    case ROUTE_MERGE_CREATE:
    case ROUTE_UNMERGE:
    case ROUTE_BLOCKED_LIST:
    case ROUTE_BLOCKED_ADD:
    case ROUTE_BLOCKED_REMOVE:
    case ROUTE_LIMITS_GET:
    case ROUTE_LIMITS_SET:
    case ROUTE_CONFLICTS_LIST:
        handle_identity_route(app, req, res);
        break;
    default:
        handle_value_route(app, req, res);
    }
}
