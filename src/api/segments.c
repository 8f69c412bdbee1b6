/*
 * segments: the "differentiate" routes: saved segments (create, list, get,
 * delete), segment members (pages with optional count, NDJSON export
 * streamed page by page), ad-hoc previews, KPIs and the value recompute,
 * and changes of a segment (PATCH). Member pages and exports compile the
 * rule by segment.c on every use and evaluate it now; each member carries
 * its entered_at from the live membership (docs/segments.md), whose stored
 * condition is compiled at create and PATCH.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "customize.h"
#include "handlers.h"
#include "log.h"
#include "segment.h"
#include "store.h"
#include "store_value.h"
#include "textutil.h"
#include "validate.h"
#include "value.h"

#define EXPORT_PAGE 1000

/* What a members page or export gives out (fields=, purpose=, channel=,
 * at=), checked: the fixed field list, purpose and channel together (the
 * channel one that carries an address), and contact fields only with a
 * purpose unless the caller is an admin. */
struct audience {
    struct segment_page_query q;
    char at[40];       /* the decision time: at= or the request's time */
    json_t *fields;    /* the field names given out, for the audit row */
    bool personal;     /* contact data leaves: contact fields or addresses */
};

static void audience_free(struct audience *a)
{
    json_decref(a->fields);
    a->fields = NULL;
}

static bool bad_query(struct response *res, const char *detail, const char *path)
{
    respond_problem(res, PROBLEM_INVALID_QUERY, detail, path);
    return false;
}

/* The current time as RFC 3339 UTC with microseconds. */
static void now_text(char *out, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    size_t n;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%06dZ", (int)(ts.tv_nsec / 1000 % 1000000));
}

static bool parse_audience(const struct request *req, struct response *res, struct audience *a)
{
    const char *fields, *purpose, *channel, *at;
    char detail[640];
    memset(a, 0, sizeof(*a));
    if (!query_param(req, res, "fields", &fields) || !query_param(req, res, "purpose", &purpose) ||
        !query_param(req, res, "channel", &channel) || !query_param(req, res, "at", &at))
        return false;
    if (fields != NULL && !audience_fields_parse(fields, &a->q.fields, detail, sizeof(detail)))
        return bad_query(res, detail, req->path);
    if (purpose == NULL && (channel != NULL || at != NULL))
        return bad_query(res, "channel and at choose whom the contact decision allows and "
                              "need purpose", req->path);
    if (purpose != NULL) {
        if (!consent_purpose_valid(purpose)) {
            snprintf(detail, sizeof(detail), "purpose must be one of: %s", consent_purpose_list());
            return bad_query(res, detail, req->path);
        }
        if (channel == NULL || !channel_valid(channel) || channel_address_kind(channel) == NULL)
            return bad_query(res, "with purpose, channel is required: one of email, sms, phone, "
                                  "app (the channels whose address a member has: email, phone, "
                                  "device)", req->path);
        if (at != NULL && !rfc3339_valid(at))
            return bad_query(res, "at must be an RFC 3339 timestamp with offset", req->path);
        if (at != NULL)
            snprintf(a->at, sizeof(a->at), "%s", at);
        else
            now_text(a->at, sizeof(a->at));
        a->q.purpose = purpose;
        a->q.channel = channel;
        a->q.at = a->at;
        a->q.address_kind = channel_address_kind(channel);
    }
    if (purpose == NULL && audience_fields_have_contact(a->q.fields) &&
        (req->who == NULL || req->who->role != ROLE_ADMIN)) {
        respond_problem(res, PROBLEM_FORBIDDEN,
                        "contact fields (identifiers, names, birthday) need purpose and channel: "
                        "only the members whom the contact decision allows for them are given "
                        "out; value fields and ids need neither",
                        req->path);
        return false;
    }
    a->personal = purpose != NULL || audience_fields_have_contact(a->q.fields);
    a->fields = json_array();
    if (a->q.fields == 0) {
        static const char *const defaults[] = {"value.tier", "value.clv", "value.p_alive",
                                               "value.margin", "value.rfm"};
        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
            json_array_append_new(a->fields, json_string(defaults[i]));
    }
    for (int i = 0; i < audience_field_count(); i++)
        if (a->q.fields & (1u << i))
            json_array_append_new(a->fields, json_string(audience_field_at(i)->name));
    return true;
}

/* Cursor of sort=clv: base64url("<clv>|<customer_id>"), clv empty when null. */
static bool clv_cursor_decode(const char *text, char clv[48], char id[UUID_TEXT_LEN + 1])
{
    unsigned char buf[96];
    long n = base64url_decode(text, buf, sizeof(buf) - 1);
    size_t k;
    if (n < UUID_TEXT_LEN + 1 || n - UUID_TEXT_LEN - 1 >= 48 || buf[n - UUID_TEXT_LEN - 1] != '|')
        return false;
    buf[n] = '\0';
    k = (size_t)n - UUID_TEXT_LEN - 1;
    memcpy(clv, buf, k);
    clv[k] = '\0';
    for (size_t i = 0; i < k; i++)
        if (!((clv[i] >= '0' && clv[i] <= '9') || (clv[i] == '-' && i == 0) ||
              (clv[i] == '.' && i > 0 && strchr(clv, '.') == clv + i)))
            return false;
    if (k > 0 && (clv[k - 1] == '.' || clv[k - 1] == '-'))
        return false;
    return uuid_canonical((char *)buf + k + 1, id);
}

/* next_cursor and next_cursor_clv of a sort=clv page become one opaque cursor. */
static void clv_cursor_encode(json_t *page)
{
    json_t *id = json_object_get(page, "next_cursor"), *clv = json_object_get(page, "next_cursor_clv");
    if (json_is_string(id)) {
        char buf[96];
        int n = snprintf(buf, sizeof(buf), "%s|%s", json_is_string(clv) ? json_string_value(clv) : "",
                         json_string_value(id));
        char *c = base64url_encode((const unsigned char *)buf, (size_t)n);
        json_object_set_new(page, "next_cursor", json_string(c));
        free(c);
    }
    json_object_del(page, "next_cursor_clv");
}

/* Write the audit row of a page or export that gives out contact data (or
 * of any export); false (res filled with 503) when it cannot be written. */
static bool audit_audience(struct app *app, const struct request *req, struct response *res,
                           const struct audience *a, const char *via, long count, bool complete,
                           long long *audit_id)
{
    json_t *out = NULL;
    char err[API_ERR_LEN];
    enum db_status st = store_segment_export_audit(app->pool, req->who, req->match->id,
                                                   a->q.purpose, a->q.channel, a->fields, via,
                                                   count, complete, &out, err, sizeof(err));
    if (st != DB_OK || !json_is_integer(json_object_get(out, "audit_id"))) {
        if (st != DB_OK)
            log_msg(LOG_ERROR, "request", "%s: audit: %s", req->path, err);
        json_decref(out);
        respond_problem(res, PROBLEM_SERVICE_UNAVAILABLE,
                        "the export could not be audited; nothing was given out; retry",
                        req->path);
        return false;
    }
    if (audit_id != NULL)
        *audit_id = json_integer_value(json_object_get(out, "audit_id"));
    json_decref(out);
    return true;
}

/* Members page plus, if asked, the count: {items, next_cursor[, count]}.
 * a is NULL for previews (the default item, no filter). */
static void respond_members(struct app *app, const struct request *req, struct response *res,
                            const struct segment_sql *seg, const struct segment_page_query *q,
                            bool with_count, const struct audience *a)
{
    json_t *page = NULL, *count = NULL;
    char err[API_ERR_LEN];
    enum db_status st = store_segment_page(req->reads, seg, q, &page, err, sizeof(err));
    if (st == DB_OK && with_count)
        st = store_segment_count(req->reads, seg, q, &count, err, sizeof(err));
    if (st != DB_OK || page == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(page);
        json_decref(count);
        return;
    }
    if (a != NULL && a->personal &&
        !audit_audience(app, req, res, a, "customers",
                        (long)json_array_size(json_object_get(page, "items")), true, NULL)) {
        json_decref(page);
        json_decref(count);
        return;
    }
    if (q->by_clv)
        clv_cursor_encode(page);
    if (count != NULL)
        json_object_update(page, count);
    json_decref(count);
    respond_json(res, 200, page);
}

/* name, description and rule of a create (all but description required)
 * or a PATCH (at least one; description null removes it), checked; the rule
 * compiled into seg. */
static bool segment_fields(const struct request *req, bool create, struct segment_sql *seg,
                           json_t *errors)
{
    static const char *const allowed[] = {"name", "description", "rule", NULL};
    json_t *name = json_object_get(req->body, "name");
    json_t *desc = json_object_get(req->body, "description");
    json_t *rule = json_object_get(req->body, "rule");
    reject_unknown_fields(req->body, allowed, "", errors);
    if ((create || name != NULL) &&
        (!json_is_string(name) || utf8_length(json_string_value(name)) < 1 ||
         utf8_length(json_string_value(name)) > 100))
        verr_add(errors, "", "name", "'name' must be a string of 1 to 100 characters");
    if (desc != NULL && !(json_is_null(desc) && !create) &&
        (!json_is_string(desc) || utf8_length(json_string_value(desc)) > 1000))
        verr_add(errors, "", "description",
                 create ? "'description' must be a string of at most 1000 characters"
                        : "'description' must be a string of at most 1000 characters, or "
                          "null to remove it");
    if (rule == NULL && create)
        verr_add(errors, "", "rule", "'rule' is required");
    else if (rule != NULL)
        segment_compile(rule, "/rule", seg, errors);
    if (!create && name == NULL && desc == NULL && rule == NULL &&
        json_array_size(errors) == 0)
        verr_add(errors, "", NULL, "give at least one of name, description, rule");
    return json_array_size(errors) == 0;
}

/* POST /v1/segments and PATCH /v1/segments/{id}: the members are computed
 * (or recomputed: the difference becomes segment.entered/segment.exited
 * events) in the same transaction. */
static void segment_save(struct app *app, const struct request *req, struct response *res,
                         bool create)
{
    json_t *errors = json_array(), *out = NULL;
    json_t *name = json_object_get(req->body, "name"), *desc = json_object_get(req->body, "description");
    json_t *rule = json_object_get(req->body, "rule");
    struct segment_sql seg = {0};
    char id[UUID_TEXT_LEN + 1], err[API_ERR_LEN];
    enum db_status st;

    if (!segment_fields(req, create, &seg, errors)) {
        segment_sql_free(&seg);
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    if (create)
        uuid_new(id);
    else
        snprintf(id, sizeof(id), "%s", req->match->id);
    st = store_segment_save(app->pool, id, create, name ? json_string_value(name) : NULL,
                            desc != NULL, desc ? json_string_value(desc) : NULL, rule, &seg, &out,
                            err, sizeof(err));
    segment_sql_free(&seg);
    if (st != DB_OK) {
        respond_db_failure(res, st, err, req->path);
    } else if (out == NULL) {
        respond_problem(res, PROBLEM_NOT_FOUND, "no segment with this id", req->path);
    } else if (json_is_true(json_object_get(out, "conflict"))) {
        json_decref(out);
        respond_problem(res, PROBLEM_CONFLICT, "a segment with this name exists", req->path);
    } else {
        respond_json(res, create ? 201 : 200, out);
    }
}

void handle_segment_create(struct app *app, const struct request *req, struct response *res)
{
    segment_save(app, req, res, true);
}

void handle_segment_update(struct app *app, const struct request *req, struct response *res)
{
    segment_save(app, req, res, false);
}

void handle_segment_simple(struct app *app, const struct request *req, struct response *res)
{
    json_t *out = NULL;
    char err[API_ERR_LEN];
    enum db_status st;
    if (req->match->route == ROUTE_SEGMENT_LIST)
        st = store_segment_list(app->pool, &out, err, sizeof(err));
    else if (req->match->route == ROUTE_SEGMENT_GET)
        st = store_segment_get(app->pool, req->match->id, &out, err, sizeof(err));
    else
        st = store_segment_delete(app->pool, req->match->id, &out, err, sizeof(err));
    if (st != DB_OK) {
        respond_db_failure(res, st, err, req->path);
    } else if (json_is_array(json_object_get(out, "webhooks"))) {
        char detail[600];
        char *ids = json_dumps(json_object_get(out, "webhooks"), JSON_COMPACT);
        snprintf(detail, sizeof(detail),
                 "webhooks filter on this segment (%.500s): change their segment_id first", ids);
        free(ids);
        json_decref(out);
        respond_problem(res, PROBLEM_CONFLICT, detail, req->path);
    } else if (out == NULL || json_is_false(json_object_get(out, "deleted"))) {
        json_decref(out);
        respond_problem(res, PROBLEM_NOT_FOUND, "no segment with this id", req->path);
    } else {
        respond_json(res, 200, out);
    }
}

void handle_segment_customers(struct app *app, const struct request *req,
                              struct response *res)
{
    struct segment_sql seg = {0};
    struct audience a;
    const char *cursor, *count, *sort;
    char cursor_id[UUID_TEXT_LEN + 1], cursor_clv[48];
    int limit;
    if (!int_param(req, res, "limit", 100, 1, 1000, &limit) || !query_param(req, res, "cursor", &cursor) ||
        !query_param(req, res, "count", &count) || !query_param(req, res, "sort", &sort))
        return;
    if (sort != NULL && strcmp(sort, "customer_id") != 0 && strcmp(sort, "clv") != 0) {
        bad_query(res, "sort must be customer_id (the default) or clv", req->path);
        return;
    }
    if (!parse_audience(req, res, &a))
        return;
    a.q.by_clv = sort != NULL && strcmp(sort, "clv") == 0;
    a.q.limit = limit;
    if (cursor != NULL) {
        bool ok = a.q.by_clv ? clv_cursor_decode(cursor, cursor_clv, cursor_id)
                             : uuid_canonical(cursor, cursor_id);
        if (!ok) {
            audience_free(&a);
            bad_query(res, "cursor is not one this server issued (for this sort)", req->path);
            return;
        }
        a.q.cursor_id = cursor_id;
        a.q.cursor_clv = a.q.by_clv && cursor_clv[0] != '\0' ? cursor_clv : NULL;
    }
    if (count != NULL && strcmp(count, "true") != 0 && strcmp(count, "false") != 0) {
        audience_free(&a);
        bad_query(res, "count must be true or false", req->path);
        return;
    }
    a.q.segment_id = req->match->id;
    if (load_segment(app, req, res, req->match->id, &seg))
        respond_members(app, req, res, &seg, &a.q, count != NULL && strcmp(count, "true") == 0,
                        &a);
    segment_sql_free(&seg);
    audience_free(&a);
}

void handle_segment_preview(struct app *app, const struct request *req,
                            struct response *res)
{
    static const char *const allowed[] = {"rule", "limit", NULL};
    json_t *errors = json_array(), *limit_v = json_object_get(req->body, "limit");
    struct segment_sql seg = {0};
    int limit = 20;
    reject_unknown_fields(req->body, allowed, "", errors);
    if (limit_v != NULL) {
        if (!json_is_integer(limit_v) || json_integer_value(limit_v) < 1 ||
            json_integer_value(limit_v) > 1000)
            verr_add(errors, "", "limit", "'limit' must be an integer from 1 to 1000");
        else
            limit = (int)json_integer_value(limit_v);
    }
    if (json_object_get(req->body, "rule") == NULL)
        verr_add(errors, "", "rule", "'rule' is required");
    else
        segment_compile(json_object_get(req->body, "rule"), "/rule", &seg, errors);
    if (json_array_size(errors) > 0) {
        segment_sql_free(&seg);
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    {
        struct segment_page_query q = {.limit = limit};
        respond_members(app, req, res, &seg, &q, true, NULL);
    }
    segment_sql_free(&seg);
}

/* NDJSON export: one member per line, fetched EXPORT_PAGE at a time. Every
 * export has one audit row (segment.export) whose count grows by each
 * page's members before that page is given out. */
struct export_state {
    struct db_pool *pool;  /* reads */
    struct db_pool *audit; /* the primary: the audit row */
    struct segment_sql seg;
    struct segment_page_query q;
    char purpose[32], channel[32], at[40];
    char cursor[UUID_TEXT_LEN + 1], segment_id[UUID_TEXT_LEN + 1];
    char cursor_clv[48]; /* sort=clv: the last member's clv, "" when it had none */
    long long audit_id;
    bool started, done;
    char *pending;
    size_t pending_len, pending_off;
};

/* The next page: its members (*page, owned) and whether it is the last. */
static bool export_page(struct export_state *ex, json_t **page)
{
    json_t *next;
    char err[API_ERR_LEN];
    ex->q.limit = EXPORT_PAGE;
    ex->q.cursor_id = ex->started ? ex->cursor : NULL;
    ex->q.cursor_clv = ex->started && ex->cursor_clv[0] != '\0' ? ex->cursor_clv : NULL;
    *page = NULL;
    if (store_segment_page(ex->pool, &ex->seg, &ex->q, page, err, sizeof(err)) != DB_OK ||
        *page == NULL) {
        log_msg(LOG_ERROR, "request", "segment export: %s", err);
        json_decref(*page);
        *page = NULL;
        return false;
    }
    ex->started = true;
    next = json_object_get(*page, "next_cursor");
    if (json_is_string(next))
        snprintf(ex->cursor, sizeof(ex->cursor), "%s", json_string_value(next));
    else
        ex->done = true;
    next = json_object_get(*page, "next_cursor_clv");
    snprintf(ex->cursor_clv, sizeof(ex->cursor_clv), "%s",
             json_is_string(next) ? json_string_value(next) : "");
    return true;
}

/* The page's lines become the pending bytes. */
static void export_render(struct export_state *ex, json_t *page)
{
    json_t *item;
    size_t i, cap = 0;
    free(ex->pending);
    ex->pending = NULL;
    ex->pending_len = ex->pending_off = 0;
    json_array_foreach(json_object_get(page, "items"), i, item) {
        char *line = json_dumps(item, JSON_COMPACT | JSON_REAL_PRECISION(15));
        size_t n = strlen(line);
        if (ex->pending_len + n + 1 > cap) {
            cap = (ex->pending_len + n + 1) * 2;
            ex->pending = realloc(ex->pending, cap);
        }
        memcpy(ex->pending + ex->pending_len, line, n);
        ex->pending[ex->pending_len + n] = '\n';
        ex->pending_len += n + 1;
        free(line);
    }
}

/* A later page: fetched, counted in the audit row, then given out. */
static bool export_fetch(struct export_state *ex)
{
    json_t *page;
    char err[API_ERR_LEN];
    if (!export_page(ex, &page))
        return false;
    if (store_segment_export_audit_add(ex->audit, ex->audit_id,
                                       (long)json_array_size(json_object_get(page, "items")),
                                       ex->done, err, sizeof(err)) != DB_OK) {
        log_msg(LOG_ERROR, "request", "segment export: audit: %s", err);
        json_decref(page);
        return false;
    }
    export_render(ex, page);
    json_decref(page);
    return true;
}

/* The next bytes of the page in hand; the next page is fetched by
 * export_fill, which the server runs off its HTTP worker (a page query on a
 * large segment can take a while). */
static long export_read(void *ctx, char *buf, size_t max)
{
    struct export_state *ex = ctx;
    size_t n;
    if (ex->pending_off == ex->pending_len)
        return ex->done ? 0 : STREAM_NEEDS_FILL;
    n = ex->pending_len - ex->pending_off;
    if (n > max)
        n = max;
    memcpy(buf, ex->pending + ex->pending_off, n);
    ex->pending_off += n;
    return (long)n;
}

static bool export_fill(void *ctx)
{
    return export_fetch(ctx);
}

static void export_free(void *ctx)
{
    struct export_state *ex = ctx;
    segment_sql_free(&ex->seg);
    free(ex->pending);
    free(ex);
}

void handle_segment_export(struct app *app, const struct request *req, struct response *res)
{
    struct export_state *ex;
    struct audience a;
    json_t *page;
    const char *sort;
    if (!query_param(req, res, "sort", &sort))
        return;
    if (sort != NULL && strcmp(sort, "customer_id") != 0 && strcmp(sort, "clv") != 0) {
        bad_query(res, "sort must be customer_id (the default) or clv", req->path);
        return;
    }
    if (!parse_audience(req, res, &a))
        return;
    a.q.by_clv = sort != NULL && strcmp(sort, "clv") == 0;
    ex = calloc(1, sizeof(*ex));
    if (!load_segment(app, req, res, req->match->id, &ex->seg)) {
        audience_free(&a);
        free(ex);
        return;
    }
    ex->pool = req->reads;
    ex->audit = app->pool;
    ex->q = a.q;
    snprintf(ex->segment_id, sizeof(ex->segment_id), "%s", req->match->id);
    ex->q.segment_id = ex->segment_id;
    if (a.q.purpose != NULL) { /* the query strings live as long as the request only */
        snprintf(ex->purpose, sizeof(ex->purpose), "%s", a.q.purpose);
        snprintf(ex->channel, sizeof(ex->channel), "%s", a.q.channel);
        snprintf(ex->at, sizeof(ex->at), "%s", a.at);
        ex->q.purpose = ex->purpose;
        ex->q.channel = ex->channel;
        ex->q.at = ex->at;
    }
    /* Fetch the first page now, so a database failure is still a clean 503,
     * and write the audit row with its count before anything is sent. */
    if (!export_page(ex, &page)) {
        audience_free(&a);
        export_free(ex);
        respond_problem(res, PROBLEM_SERVICE_UNAVAILABLE, "the database is unreachable; retry",
                        req->path);
        return;
    }
    if (!audit_audience(app, req, res, &a, "export",
                        (long)json_array_size(json_object_get(page, "items")), ex->done,
                        &ex->audit_id)) {
        json_decref(page);
        audience_free(&a);
        export_free(ex);
        return;
    }
    audience_free(&a);
    export_render(ex, page);
    json_decref(page);
    res->status = 200;
    res->stream_content_type = "application/x-ndjson";
    res->stream_read = export_read;
    res->stream_fill = export_fill;
    res->stream_free = export_free;
    res->stream_ctx = ex;
}

void handle_kpis(struct app *app, const struct request *req, struct response *res)
{
    const char *from, *to, *segment_id;
    char err[API_ERR_LEN];
    struct segment_sql seg = {0};
    json_t *out = NULL;
    enum db_status st;
    if (!query_param(req, res, "from", &from) || !query_param(req, res, "to", &to) ||
        !query_param(req, res, "segment_id", &segment_id))
        return;
    if (from == NULL || to == NULL || !rfc3339_valid(from) || !rfc3339_valid(to)) {
        respond_problem(res, PROBLEM_INVALID_QUERY,
                        "from and to are required RFC 3339 timestamps with offset", req->path);
        return;
    }
    if (segment_id != NULL && !load_segment_by_text(app, req, res, segment_id, &seg))
        return;
    st = store_kpis(req->reads, from, to, segment_id ? &seg : NULL, &out, err, sizeof(err));
    segment_sql_free(&seg);
    if (st != DB_OK)
        respond_db_failure(res, st, err, req->path);
    else if (out == NULL)
        respond_problem(res, PROBLEM_INVALID_QUERY, "to must be later than from", req->path);
    else
        respond_json(res, 200, out);
}

void handle_recompute(struct app *app, const struct request *req, struct response *res)
{
    static const char *const allowed[] = {"as_of", "live", NULL};
    json_t *as_of = json_object_get(req->body, "as_of"), *errors = json_array(), *out = NULL;
    json_t *live = json_object_get(req->body, "live");
    char err[API_ERR_LEN];
    enum db_status st;
    reject_unknown_fields(req->body, allowed, "", errors);
    if (as_of != NULL && (!json_is_string(as_of) || !rfc3339_valid(json_string_value(as_of))))
        verr_add(errors, "", "as_of", "'as_of' must be an RFC 3339 timestamp with offset");
    if (live != NULL && !json_is_boolean(live))
        verr_add(errors, "", "live", "'live' must be true or false");
    if (json_array_size(errors) > 0) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    /* live by default only without as_of: a dated run must not replace
     * today's values */
    st = value_recompute(app->pool, as_of ? json_string_value(as_of) : NULL,
                         live != NULL ? json_is_true(live) : as_of == NULL, NULL, &out, err,
                         sizeof(err));
    if (st != DB_OK) {
        respond_db_failure(res, st, err, req->path);
    } else if (strcmp(json_string_value(json_object_get(out, "status")) ?: "", "failed") == 0) {
        respond_problem(res, PROBLEM_MODEL_NOT_FITTED,
                        json_string_value(json_object_get(out, "error")), req->path);
        json_object_set(res->body, "run", json_object_get(out, "run"));
        json_decref(out);
    } else {
        respond_json(res, 200, out);
    }
}

void handle_value_runs(struct app *app, const struct request *req, struct response *res)
{
    char limit_text[16], before_text[16], err[API_ERR_LEN];
    int limit, before;
    json_t *out = NULL;
    enum db_status st;
    (void)app;
    if (!int_param(req, res, "limit", 20, 1, 200, &limit) ||
        !int_param(req, res, "cursor", 0, 1, INT_MAX, &before))
        return;
    snprintf(limit_text, sizeof(limit_text), "%d", limit);
    snprintf(before_text, sizeof(before_text), "%d", before);
    st = store_value_runs(req->reads, before > 0 ? before_text : NULL, limit_text, &out, err,
                          sizeof(err));
    if (st != DB_OK) {
        respond_db_failure(res, st, err, req->path);
        return;
    }
    /* a run under way on this instance (its row is not visible until it ends) */
    json_t *now = value_progress();
    json_object_set_new(out, "in_progress", now != NULL ? now : json_null());
    respond_json(res, 200, out);
}

void handle_value_settings(struct app *app, const struct request *req, struct response *res)
{
    json_t *errors, *out = NULL;
    char err[API_ERR_LEN], *patch = NULL;
    enum db_status st;
    if (req->match->route == ROUTE_VALUE_SETTINGS_PATCH) {
        errors = json_array();
        validate_value_settings_patch(req->body, errors);
        if (json_array_size(errors) > 0) {
            respond_validation(res, errors, req->path);
            return;
        }
        json_decref(errors);
        patch = json_dumps(req->body, JSON_COMPACT);
    }
    st = store_value_settings(app->pool, patch, req->who->key_id, role_name(req->who->role), &out,
                              err, sizeof(err));
    free(patch);
    if (st != DB_OK) {
        respond_db_failure(res, st, err, req->path);
    } else if (json_object_get(out, "invalid") != NULL) {
        errors = json_array();
        const char *field = json_string_value(json_object_get(out, "field"));
        verr_add(errors, "", field != NULL ? field : "tier_mgc_fraction", "%s",
                 json_string_value(json_object_get(out, "invalid")));
        json_decref(out);
        respond_validation(res, errors, req->path);
    } else {
        respond_json(res, 200, out);
    }
}

/* GET /v1/settings/fx-rates, and PUT: the rates given added, replaced or
 * (null) removed (crm.put_fx_rates), audited. */
void handle_fx_rates(struct app *app, const struct request *req, struct response *res)
{
    json_t *errors, *out = NULL;
    const char *params[3];
    char err[API_ERR_LEN], *rates = NULL;
    enum db_status st;
    if (req->match->route == ROUTE_FX_RATES_PUT) {
        errors = json_array();
        validate_fx_rates(req->body, errors);
        if (json_array_size(errors) > 0) {
            respond_validation(res, errors, req->path);
            return;
        }
        json_decref(errors);
        /* 15 significant digits: 1.1 goes as 1.1, not 1.1000000000000001 */
        rates = json_dumps(json_object_get(req->body, "rates"),
                           JSON_COMPACT | JSON_REAL_PRECISION(15));
        params[0] = rates;
        params[1] = req->who ? req->who->key_id : NULL;
        params[2] = req->who ? role_name(req->who->role) : NULL;
        st = store_call(app->pool, STMT_FX_RATES_PUT, 3, params, &out, err, sizeof(err));
    } else {
        st = store_call(app->pool, STMT_FX_RATES_GET, 0, NULL, &out, err, sizeof(err));
    }
    free(rates);
    respond_settings(res, st, out, err, "rates", req->path);
}

/* GET /v1/customers/{id}/segments: the customer's current and past
 * memberships (live membership, docs/segments.md), newest first; the read
 * is audited like the other personal reads; an erased customer is 410. */
void handle_customer_segments(struct app *app, const struct request *req, struct response *res)
{
    char limit_text[16], err[API_ERR_LEN];
    const char *params[4];
    json_t *out = NULL;
    int limit;
    enum db_status st;
    if (!int_param(req, res, "limit", 100, 1, 1000, &limit))
        return;
    snprintf(limit_text, sizeof(limit_text), "%d", limit);
    params[0] = req->match->id;
    params[1] = req->who ? req->who->key_id : NULL;
    params[2] = req->who ? role_name(req->who->role) : NULL;
    params[3] = limit_text;
    st = store_call(app->pool, STMT_CUSTOMER_SEGMENTS, 4, params, &out, err, sizeof(err));
    if (st != DB_OK)
        respond_db_failure(res, st, err, req->path);
    else if (out == NULL)
        respond_problem(res, PROBLEM_NOT_FOUND, "no customer with this id", req->path);
    else if (!respond_if_gone(res, out, req->path))
        respond_json(res, 200, out);
}
