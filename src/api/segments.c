/*
 * segments: the "differentiate" routes: saved segments (create, list, get,
 * delete), segment members (pages with optional count, NDJSON export
 * streamed page by page), ad-hoc previews, KPIs and the value recompute.
 * Segment rules are compiled by segment.c on every use, so a stored rule
 * always runs with today's compiler.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "log.h"
#include "segment.h"
#include "store_value.h"
#include "textutil.h"
#include "validate.h"
#include "value.h"

#define EXPORT_PAGE 1000

static bool parse_limit(const struct request *req, struct response *res, int def, int max,
                        int *limit)
{
    const char *text;
    char *end, detail[80];
    long n;
    *limit = def;
    if (!query_param(req, res, "limit", &text))
        return false;
    if (text == NULL)
        return true;
    n = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || n < 1 || n > max) {
        snprintf(detail, sizeof(detail), "limit must be an integer from 1 to %d", max);
        respond_problem(res, PROBLEM_INVALID_QUERY, detail, req->path);
        return false;
    }
    *limit = (int)n;
    return true;
}

/* Members page plus, if asked, the count: {items, next_cursor[, count]}. */
static void respond_members(struct app *app, const struct request *req, struct response *res,
                            const struct segment_sql *seg, const char *cursor, int limit,
                            bool with_count)
{
    json_t *page = NULL, *count = NULL;
    char err[API_ERR_LEN];
    enum db_status st = store_segment_page(req->reads, seg, cursor, limit, &page, err, sizeof(err));
    if (st == DB_OK && with_count)
        st = store_segment_count(req->reads, seg, &count, err, sizeof(err));
    if (st != DB_OK || page == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(page);
        json_decref(count);
        return;
    }
    if (count != NULL)
        json_object_update(page, count);
    json_decref(count);
    respond_json(res, 200, page);
}

void handle_segment_create(struct app *app, const struct request *req, struct response *res)
{
    static const char *const allowed[] = {"name", "description", "rule", NULL};
    json_t *errors = json_array(), *name = json_object_get(req->body, "name");
    json_t *desc = json_object_get(req->body, "description"), *out = NULL;
    struct segment_sql seg = {0};
    char id[UUID_TEXT_LEN + 1], err[API_ERR_LEN];
    enum db_status st;

    reject_unknown_fields(req->body, allowed, "", errors);
    if (!json_is_string(name) || utf8_length(json_string_value(name)) < 1 ||
        utf8_length(json_string_value(name)) > 100)
        verr_add(errors, "", "name", "'name' must be a string of 1 to 100 characters");
    if (desc != NULL && (!json_is_string(desc) || utf8_length(json_string_value(desc)) > 1000))
        verr_add(errors, "", "description", "'description' must be a string of at most 1000 characters");
    if (json_object_get(req->body, "rule") == NULL)
        verr_add(errors, "", "rule", "'rule' is required");
    else
        segment_compile(json_object_get(req->body, "rule"), "/rule", &seg, errors);
    segment_sql_free(&seg);
    if (json_array_size(errors) > 0) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    uuid_new(id);
    st = store_segment_create(app->pool, id, json_string_value(name),
                              desc ? json_string_value(desc) : NULL,
                              json_object_get(req->body, "rule"), &out, err, sizeof(err));
    if (st != DB_OK)
        respond_db_failure(res, st, err, req->path);
    else if (out == NULL)
        respond_problem(res, PROBLEM_CONFLICT, "a segment with this name exists", req->path);
    else
        respond_json(res, 201, out);
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
    const char *cursor, *count;
    char cursor_id[UUID_TEXT_LEN + 1];
    int limit;
    if (!parse_limit(req, res, 100, 1000, &limit) || !query_param(req, res, "cursor", &cursor) ||
        !query_param(req, res, "count", &count))
        return;
    if (cursor != NULL && !uuid_canonical(cursor, cursor_id)) {
        respond_problem(res, PROBLEM_INVALID_QUERY, "cursor is not one this server issued",
                        req->path);
        return;
    }
    if (count != NULL && strcmp(count, "true") != 0 && strcmp(count, "false") != 0) {
        respond_problem(res, PROBLEM_INVALID_QUERY, "count must be true or false", req->path);
        return;
    }
    if (!load_segment(app, req, res, req->match->id, &seg))
        return;
    respond_members(app, req, res, &seg, cursor ? cursor_id : NULL, limit,
                    count != NULL && strcmp(count, "true") == 0);
    segment_sql_free(&seg);
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
    respond_members(app, req, res, &seg, NULL, limit, true);
    segment_sql_free(&seg);
}

/* NDJSON export: one member per line, fetched EXPORT_PAGE at a time. */
struct export_state {
    struct db_pool *pool;
    struct segment_sql seg;
    char cursor[UUID_TEXT_LEN + 1];
    bool started, done;
    char *pending;
    size_t pending_len, pending_off;
};

static bool export_fetch(struct export_state *ex)
{
    json_t *page = NULL, *item, *next;
    char err[API_ERR_LEN];
    size_t i;
    size_t cap = 0;
    if (store_segment_page(ex->pool, &ex->seg, ex->started ? ex->cursor : NULL, EXPORT_PAGE,
                           &page, err, sizeof(err)) != DB_OK || page == NULL) {
        log_msg(LOG_ERROR, "request", "segment export: %s", err);
        json_decref(page);
        return false;
    }
    ex->started = true;
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
    next = json_object_get(page, "next_cursor");
    if (json_is_string(next))
        snprintf(ex->cursor, sizeof(ex->cursor), "%s", json_string_value(next));
    else
        ex->done = true;
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
    struct export_state *ex = calloc(1, sizeof(*ex));
    if (!load_segment(app, req, res, req->match->id, &ex->seg)) {
        free(ex);
        return;
    }
    ex->pool = req->reads;
    /* Fetch the first page now, so a database failure is still a clean 503. */
    if (!export_fetch(ex)) {
        export_free(ex);
        respond_problem(res, PROBLEM_SERVICE_UNAVAILABLE, "the database is unreachable; retry",
                        req->path);
        return;
    }
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
    static const char *const allowed[] = {"as_of", NULL};
    json_t *as_of = json_object_get(req->body, "as_of"), *errors = json_array(), *out = NULL;
    char err[API_ERR_LEN];
    enum db_status st;
    reject_unknown_fields(req->body, allowed, "", errors);
    if (as_of != NULL && (!json_is_string(as_of) || !rfc3339_valid(json_string_value(as_of))))
        verr_add(errors, "", "as_of", "'as_of' must be an RFC 3339 timestamp with offset");
    if (json_array_size(errors) > 0) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    st = value_recompute(app->pool, as_of ? json_string_value(as_of) : NULL, NULL, &out, err,
                         sizeof(err));
    if (st != DB_OK)
        respond_db_failure(res, st, err, req->path);
    else
        respond_json(res, 200, out);
}
