/*
 * http: adapts libmicrohttpd's callback API to the handlers. A few worker
 * threads (--http-threads, epoll) each serve many connections and run their
 * requests' handlers, which block on the database; the long routes
 * (route_runs_long: segments, KPIs, value runs, merges, exports) would hold
 * up every other connection of their worker, so their connection is
 * suspended and the handler runs on one of a few long-route threads
 * (--http-long-threads, a FIFO queue of at most --http-long-queue in front
 * of them, beyond which they are answered 503: a flood of reports cannot
 * take every database connection from the front office). A streamed
 * response's blocking part (an export's next page, stream_fill) is queued
 * to the same threads. --http-threads 0
 * selects one thread per connection instead. Bodies are collected up to the
 * configured limit, rejected early when Content-Length is already too
 * large, then checked for UTF-8 and parsed as a JSON object before any
 * handler sees them.
 *
 * HTTP framing is checked before anything else: a request with both
 * Transfer-Encoding and Content-Length, two Content-Length headers, a
 * transfer coding other than chunked, or HTTP/1.1 without exactly one Host
 * is answered 400 (request smuggling and desync need such ambiguities); a
 * query of more parameters than the request memory holds, 431; an
 * unreadable Content-Length, which libmicrohttpd rejects itself with a
 * malformed answer, 400 or 413 (answer_bad_content_length).
 *
 * Connections: at most --max-connections, and --max-connections-per-ip from
 * one address (more are closed as soon as accepted), so idle sockets from
 * one client cannot hold every slot while new clients wait in the backlog;
 * a new connection has --header-timeout idle seconds to complete its first
 * request head (slowloris), then the usual --connection-timeout applies.
 * The connection limit is kept within the process's descriptor limit.
 *
 * SIGTERM (http_drain_and_stop): the daemon keeps accepting, but every
 * request arriving from then on is answered 503 (its body, if any, read and
 * dropped first), except /health, /ready (503 itself then) and /metrics,
 * and every response carries Connection: close, so kept-alive clients
 * leave and new ones are told at once to go elsewhere; the requests that
 * arrived before are waited for.
 */
#include "http.h"

#include <arpa/inet.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "db.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "textutil.h"
#include "workq.h"

struct http_server {
    struct MHD_Daemon *daemon;
    char *tls_cert, *tls_key; /* PEM text when serving HTTPS */
    struct app *app;
    atomic_int in_flight;
    bool pooled;          /* worker threads; false: one thread per connection */
    atomic_int offloaded; /* long requests queued or running on the long-route threads */
    atomic_bool draining; /* stopping: new requests are refused, responses close their
                             connection, long requests run on their worker */
    /* The long-route threads and their FIFO queue of offloads (worker-thread
     * mode only), bounded by http_long_queue. */
    struct workq *long_routes;
};

/* A body the server will not use (larger than --body-limit, or a request
 * refused during the drain) is still read, up to this many bytes, and
 * dropped: a client still sending it (Python's urllib, Node) then reads the
 * 413 or 503 instead of a broken pipe. A larger Content-Length, or one with
 * Expect: 100-continue, is answered at once (the client with Expect sends
 * nothing); a chunked body going past it has its connection closed. */
#define DISCARD_MAX ((size_t)16 * 1024 * 1024)

/* libmicrohttpd keeps a connection's request head (read buffer, header and
 * query-parameter records) in a pool of this size. MHD clears the pool
 * between keep-alive requests (callgrind: 64 KB cost 22 % of a profile GET's
 * instructions), so it stays small; a head that does not fit is answered
 * 414 or 431 by libmicrohttpd, and a query of too many parameters 431 by
 * on_uri (libmicrohttpd 0.9.75 never answers that one itself). */
#define CONNECTION_MEMORY ((size_t)16 * 1024)
/* Query parameters accepted (the API uses a handful); more: 431. */
#define MAX_QUERY_PARAMS 64
/* libmicrohttpd's record of one query parameter, with its pool's alignment. */
#define QUERY_PARAM_COST 64

struct stream;

/* A long route's request, handled on a thread of its own while its
 * connection is suspended; the worker sends res once it is resumed. Or,
 * when fill is set, the next part of a streamed response (an export's
 * next page), fetched the same way. */
struct offload {
    struct workq_item item; /* first: the long-route queue hands it back */
    struct http_server *srv;
    struct MHD_Connection *conn;
    struct stream *fill;
    struct request req;
    struct route_match match;
    struct principal who;
    struct response res;
};

struct request_ctx {
    struct http_server *srv;
    char *body;
    size_t len, cap;
    bool too_large;
    bool declared_too_large; /* by its Content-Length: 413 before routing, once read */
    size_t dropped; /* body bytes read and dropped (too large, or refused) */
    bool counted;  /* in in_flight: arrived before the drain began */
    bool refused;  /* arrived during the drain: 503 once its body is read */
    struct timespec start;
    int route;  /* enum route, or -1 before/without a match */
    int status; /* of the queued response */
    char request_id[65];
    char key_id[UUID_TEXT_LEN + 1];
    struct offload *offload; /* set while a long route runs elsewhere */
};

/* The request this thread is answering right now (set on every entry from
 * libmicrohttpd), so the response writers can note its status and id. */
static _Thread_local struct request_ctx *current;

/* A client's X-Request-Id is echoed if it is 1..64 printable ASCII
 * characters; otherwise the server makes one. */
static void take_request_id(struct MHD_Connection *conn, struct request_ctx *ctx)
{
    const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    size_t n = given ? strlen(given) : 0;
    bool ok = n >= 1 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = given[i] > 32 && given[i] < 127 && given[i] != '"' && given[i] != '\\';
    if (ok)
        memcpy(ctx->request_id, given, n + 1);
    else
        uuid_new(ctx->request_id);
}

static void note_response(struct MHD_Response *r, int status)
{
    if (current == NULL)
        return;
    current->status = status;
    MHD_add_response_header(r, "X-Request-Id", current->request_id);
    /* Stopping: libmicrohttpd closes the connection after this response. */
    if (atomic_load(&current->srv->draining))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
}

struct stream {
    long (*read)(void *ctx, char *buf, size_t max);
    bool (*fill)(void *ctx);
    void (*free)(void *ctx);
    void *ctx;
    struct http_server *srv;
    struct MHD_Connection *conn;
    bool fill_failed; /* set by the long-route thread that ran fill */
};

static bool start_fill(struct stream *s);

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *s = cls;
    long n;
    (void)pos;
    if (s->fill_failed)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    n = s->read(s->ctx, buf, max);
    if (n == STREAM_NEEDS_FILL && s->fill != NULL) {
        /* Suspended until a long-route thread has filled it: returning 0
         * is then what libmicrohttpd expects. */
        if (start_fill(s))
            return 0;
        if (!s->fill(s->ctx)) /* one thread per connection, or stopping */
            return MHD_CONTENT_READER_END_WITH_ERROR;
        n = s->read(s->ctx, buf, max);
    }
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return (ssize_t)n;
}

static void stream_release(void *cls)
{
    struct stream *s = cls;
    s->free(s->ctx);
    free(s);
}

static enum MHD_Result send_stream(struct MHD_Connection *conn, struct response *res)
{
    struct stream *s = malloc(sizeof(*s));
    struct MHD_Response *r;
    enum MHD_Result ret;
    s->read = res->stream_read;
    s->fill = res->stream_fill;
    s->free = res->stream_free;
    s->ctx = res->stream_ctx;
    s->srv = current != NULL ? current->srv : NULL;
    s->conn = conn;
    s->fill_failed = false;
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_reader, s,
                                          stream_release);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->stream_content_type);
    if (res->read_from != NULL)
        MHD_add_response_header(r, "CRM-Read-From", res->read_from);
    note_response(r, res->status);
    ret = MHD_queue_response(conn, (unsigned int)res->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* A compiled-in file (res->static_*): its bytes are never copied nor freed. */
static enum MHD_Result send_static(struct MHD_Connection *conn, struct response *res)
{
    size_t len = res->status == 304 ? 0 : res->static_len;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)res->static_body, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->static_type);
    if (res->etag != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, res->etag);
    if (res->cache_control != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, res->cache_control);
    if (res->csp != NULL) {
        MHD_add_response_header(r, "Content-Security-Policy", res->csp);
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    }
    note_response(r, res->status);
    ret = MHD_queue_response(conn, (unsigned int)res->status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_response(struct MHD_Connection *conn, struct response *res)
{
    if (res->stream_read != NULL)
        return send_stream(conn, res);
    if (res->static_type != NULL)
        return send_static(conn, res);

    char *text = res->raw_body != NULL
                     ? res->raw_body
                     : json_dumps(res->body, JSON_COMPACT | JSON_REAL_PRECISION(15));
    struct MHD_Response *r;
    res->raw_body = NULL; /* MHD frees text */
    enum MHD_Result ret;
    if (text == NULL) { /* cannot happen for objects we built; keep the connection sane */
        text = strdup("{\"type\":\"urn:crm:problem:internal-error\",\"status\":500}");
        res->status = 500;
        res->problem = true;
    }
    r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            res->problem ? "application/problem+json"
                                         : "application/json; charset=utf-8");
    note_response(r, res->status);
    if (res->allow[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, res->allow);
    if (res->content_location[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_LOCATION, res->content_location);
    if (res->write_lsn[0])
        MHD_add_response_header(r, "CRM-Write-LSN", res->write_lsn);
    if (res->read_from != NULL)
        MHD_add_response_header(r, "CRM-Read-From", res->read_from);
    if (res->auth_challenge)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"crm\"");
    if (res->retry_after > 0) {
        char buf[16];
        snprintf(buf, sizeof(buf), "%d", res->retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, buf);
    }
    ret = MHD_queue_response(conn, (unsigned int)res->status, r);
    MHD_destroy_response(r);
    json_decref(res->body);
    res->body = NULL;
    return ret;
}

static enum MHD_Result send_problem(struct MHD_Connection *conn, enum problem_kind kind,
                                    const char *detail, const char *path)
{
    struct response res = {0};
    respond_problem(&res, kind, detail, path);
    return send_response(conn, &res);
}

static const char *query_lookup(void *ctx, const char *key)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)ctx, MHD_GET_ARGUMENT_KIND, key);
}

/* Nesting depth of a parsed document (jansson itself stops at 2048). */
/* The query string against the route's parameters (route_query_params):
 * the first unknown, repeated or NUL-carrying parameter is named in detail. */
struct query_scan {
    enum route route;
    uint32_t seen;
    char *detail;
    size_t cap;
};

static enum MHD_Result query_scan_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                      size_t key_size, const char *value, size_t value_size)
{
    struct query_scan *q = cls;
    int index;
    (void)kind;
    if (memchr(key, '\0', key_size) != NULL) {
        snprintf(q->detail, q->cap, "a query parameter name contains a NUL character (%%00)");
        return MHD_NO;
    }
    index = route_query_param_index(q->route, key, key_size);
    if (index < 0 || index >= 32) {
        const char *known = route_query_params(q->route);
        snprintf(q->detail, q->cap, "unknown query parameter '%.*s'; this route accepts %s%s",
                 key_size > 64 ? 64 : (int)key_size, key, *known ? "only: " : "none",
                 known);
        utf8_truncate(q->detail);
        return MHD_NO;
    }
    if (q->seen & (1u << index)) {
        snprintf(q->detail, q->cap, "query parameter '%.*s' is given more than once",
                 (int)key_size, key);
        return MHD_NO;
    }
    q->seen |= 1u << index;
    if (value != NULL && memchr(value, '\0', value_size) != NULL) {
        snprintf(q->detail, q->cap, "query parameter '%.*s' contains a NUL character (%%00)",
                 (int)key_size, key);
        return MHD_NO;
    }
    return MHD_YES;
}

static bool query_acceptable(struct MHD_Connection *conn, enum route route, char *detail,
                             size_t cap)
{
    struct query_scan q = {.route = route, .detail = detail, .cap = cap};
    detail[0] = '\0';
    MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, query_scan_one, &q);
    return detail[0] == '\0';
}

static int json_depth(json_t *v)
{
    int deepest = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        json_object_foreach(v, k, child) {
            int d = json_depth(child);
            if (d > deepest)
                deepest = d;
        }
        return deepest + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child) {
            int d = json_depth(child);
            if (d > deepest)
                deepest = d;
        }
        return deepest + 1;
    }
    return 0;
}

static bool is_json_content_type(const char *ct)
{
    size_t n = strlen("application/json");
    if (ct == NULL || strncasecmp(ct, "application/json", n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

static bool append_body(struct request_ctx *ctx, const char *data, size_t size, size_t limit)
{
    if (ctx->too_large || ctx->len + size > limit) {
        ctx->too_large = true;
        free(ctx->body);
        ctx->body = NULL;
        ctx->len = ctx->cap = 0;
        return false;
    }
    if (ctx->len + size > ctx->cap) {
        size_t cap = ctx->cap ? ctx->cap : 4096;
        while (cap < ctx->len + size)
            cap *= 2;
        ctx->body = realloc(ctx->body, cap);
        ctx->cap = cap;
    }
    memcpy(ctx->body + ctx->len, data, size);
    ctx->len += size;
    return true;
}

/* A response that will not be sent (its client went away). */
static void discard_response(struct response *res)
{
    json_decref(res->body);
    free(res->raw_body);
    if (res->stream_free != NULL)
        res->stream_free(res->stream_ctx);
}

/* Run one long request, then hand its connection back to its worker. */
/* The end of every offload: its connection goes back to its worker. From
 * here on the worker owns what the offload produced; srv stays valid until
 * offloaded is 0 (http_drain_and_stop waits for that). */
static void hand_back(struct http_server *srv, struct MHD_Connection *conn)
{
    metrics_long_request(-1);
    MHD_resume_connection(conn);
    atomic_fetch_sub(&srv->offloaded, 1);
}

static void run_offload(struct offload *o)
{
    struct http_server *srv = o->srv;
    if (o->fill != NULL) { /* the stream is the worker's again once resumed */
        struct MHD_Connection *conn = o->conn;
        if (!o->fill->fill(o->fill->ctx))
            o->fill->fill_failed = true;
        free(o);
        hand_back(srv, conn);
        return;
    }
    handle_request(srv->app, &o->req, &o->res);
    json_decref(o->req.body);
    o->req.body = NULL;
    hand_back(srv, o->conn); /* the worker sends o->res */
}

/* A long-route thread's work (workq runs queued offloads in arrival order). */
static void run_queued(struct workq_item *item)
{
    run_offload((struct offload *)(void *)item);
}

/* Hand a long request back to its worker unrun, answered 503 (the queue is
 * full, or the server is stopping): the client may retry, here or on
 * another instance. */
static void refuse_offload(struct offload *o, const char *detail)
{
    struct http_server *srv = o->srv;
    json_decref(o->req.body);
    o->req.body = NULL;
    respond_problem(&o->res, PROBLEM_SERVICE_UNAVAILABLE, detail, o->req.path);
    o->res.retry_after = 1;
    hand_back(srv, o->conn);
}

/* Queue a long route's request for the long-route threads (the caller has
 * counted it in offloaded); its connection is suspended until it is done, and
 * on_request then sends the response. False when the queue already holds
 * http_long_queue requests: nothing was queued, the caller answers. */
static bool start_offload(struct http_server *srv, struct MHD_Connection *conn,
                          struct request_ctx *ctx, const struct request *req)
{
    struct offload *o;
    if (!workq_reserve(srv->long_routes)) /* this request's place, taken before it is queued */
        return false;
    o = calloc(1, sizeof(*o));
    o->srv = srv;
    o->conn = conn;
    o->req = *req;
    o->match = *req->match;
    o->req.match = &o->match;
    if (req->who != NULL) {
        o->who = *req->who;
        o->req.who = &o->who;
    }
    ctx->offload = o;
    metrics_long_request(1);
    MHD_suspend_connection(conn);
    workq_push(srv->long_routes, &o->item, true); /* its place was taken above */
    return true;
}

/* Queue the fill of a stream whose buffered part is sent (the next page of
 * an export) and suspend its connection until it is done. Not bounded by
 * http_long_queue: the response is already under way. False when it must
 * run on the worker (one thread per connection, or stopping). */
static bool start_fill(struct stream *s)
{
    struct http_server *srv = s->srv;
    struct offload *o;
    if (srv == NULL || !srv->pooled)
        return false;
    atomic_fetch_add(&srv->offloaded, 1); /* before draining is read, as for requests */
    if (atomic_load(&srv->draining)) {
        atomic_fetch_sub(&srv->offloaded, 1);
        return false;
    }
    o = calloc(1, sizeof(*o));
    o->srv = srv;
    o->conn = s->conn;
    o->fill = s;
    metrics_long_request(1);
    MHD_suspend_connection(s->conn);
    workq_push(srv->long_routes, &o->item, false);
    return true;
}

/* On SIGTERM: the long requests still waiting in the queue are answered 503
 * at once instead of being run (they have not started, so nothing is half
 * done); only the running ones are waited for. A stream's fill in the queue
 * belongs to a response already under way: it runs here. */
static void refuse_queued_offloads(struct http_server *srv)
{
    struct offload *o;
    if (!srv->pooled)
        return;
    o = (struct offload *)(void *)workq_take_all(srv->long_routes);
    while (o != NULL) {
        struct offload *next = (struct offload *)(void *)o->item.next;
        if (o->fill != NULL)
            run_offload(o);
        else
            refuse_offload(o, "the server is shutting down; retry");
        o = next;
    }
}

static enum MHD_Result finish_request(struct http_server *srv, struct MHD_Connection *conn,
                                      const char *method, const char *path,
                                      struct request_ctx *ctx)
{
    struct route_match match;
    struct request req = {.method = method, .path = path, .match = &match,
                          .query = query_lookup, .query_ctx = conn};
    struct response res = {0};
    struct principal who;
    bool has_body = strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0 ||
                    strcmp(method, "PUT") == 0;
    char detail[256];
    enum MHD_Result ret;

    if (!utf8_valid(path, strlen(path)))
        return send_problem(conn, PROBLEM_INVALID_UTF8, "the request path is not valid UTF-8", NULL);
    route_request(method, path, &match);
    if (match.status == ROUTE_MATCHED || match.status == ROUTE_BAD_UUID)
        ctx->route = (int)match.route;
    switch (match.status) {
    case ROUTE_NOT_FOUND:
        return send_problem(conn, PROBLEM_NOT_FOUND, "no such route", path);
    case ROUTE_METHOD_NOT_ALLOWED:
        respond_problem(&res, PROBLEM_METHOD_NOT_ALLOWED, "this route does not accept the method",
                        path);
        snprintf(res.allow, sizeof(res.allow), "%s", match.allow);
        return send_response(conn, &res);
    case ROUTE_BAD_UUID:
        return send_problem(conn, PROBLEM_INVALID_UUID, "the id in the path must be a UUID", path);
    case ROUTE_MATCHED:
        break;
    }

    if (!route_is_public(match.route)) {
        const char *authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                        MHD_HTTP_HEADER_AUTHORIZATION);
        const char *xkey = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-API-Key");
        if (!dispatch_admit(srv->app, match.route, path, authz, xkey, &who, &res))
            return send_response(conn, &res);
        req.who = &who;
        memcpy(ctx->key_id, who.key_id, sizeof(ctx->key_id));
    }
    if (!query_acceptable(conn, match.route, detail, sizeof(detail)))
        return send_problem(conn, PROBLEM_INVALID_QUERY, detail, path);
    if (ctx->too_large) {
        snprintf(detail, sizeof(detail), "the body exceeds the limit of %zu bytes",
                 srv->app->cfg->body_limit);
        return send_problem(conn, PROBLEM_PAYLOAD_TOO_LARGE, detail, path);
    }
    if (has_body) {
        const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_TYPE);
        json_error_t jerr;
        if (!is_json_content_type(ct))
            return send_problem(conn, PROBLEM_UNSUPPORTED_MEDIA_TYPE,
                                "send the body as Content-Type: application/json", path);
        if (ctx->len == 0)
            return send_problem(conn, PROBLEM_MALFORMED_JSON, "the request body is empty", path);
        if (!utf8_valid(ctx->body, ctx->len))
            return send_problem(conn, PROBLEM_INVALID_UTF8, "the request body is not valid UTF-8",
                                path);
        req.body = json_loadb(ctx->body, ctx->len, JSON_REJECT_DUPLICATES, &jerr);
        if (req.body == NULL) {
            snprintf(detail, sizeof(detail), "%s (line %d, column %d)", jerr.text, jerr.line,
                     jerr.column);
            utf8_truncate(detail);
            return send_problem(conn, PROBLEM_MALFORMED_JSON, detail, path);
        }
        if (json_depth(req.body) > srv->app->cfg->json_depth) {
            json_decref(req.body);
            snprintf(detail, sizeof(detail), "the body is nested deeper than %d levels",
                     srv->app->cfg->json_depth);
            return send_problem(conn, PROBLEM_MALFORMED_JSON, detail, path);
        }
        if (!json_is_object(req.body)) {
            json_decref(req.body);
            return send_problem(conn, PROBLEM_MALFORMED_JSON, "the body must be a JSON object",
                                path);
        }
    }
    req.min_lsn = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "CRM-Min-LSN");
    req.if_none_match = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                    MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (srv->pooled && route_runs_long(match.route)) {
        /* Counted before draining is read, and http_drain_and_stop sets
         * draining before it reads the count: either this request is queued
         * and waited for, or it sees draining and runs here (libmicrohttpd
         * must not stop with a connection suspended). */
        atomic_fetch_add(&srv->offloaded, 1);
        if (!atomic_load(&srv->draining)) {
            if (start_offload(srv, conn, ctx, &req))
                return MHD_YES;
            atomic_fetch_sub(&srv->offloaded, 1);
            json_decref(req.body);
            metrics_long_refused();
            respond_problem(&res, PROBLEM_SERVICE_UNAVAILABLE,
                            "too many long requests (segments, KPIs, value runs, merges, exports) "
                            "are waiting; retry shortly", path);
            res.retry_after = 1;
            return send_response(conn, &res);
        }
        atomic_fetch_sub(&srv->offloaded, 1);
    }
    handle_request(srv->app, &req, &res);
    json_decref(req.body);
    ret = send_response(conn, &res);
    return ret;
}

/* What on_uri returns (as the request's con_cls) for a query of too many
 * parameters: on_request answers 431. */
static char too_many_params;

/* The connections whose request lines this thread parsed last (on_uri;
 * removed when they close): see answer_bad_content_length. A connection is
 * served by one thread for its whole life (its worker, or its own thread). */
#define PARSING_KEPT 8
static _Thread_local struct MHD_Connection *parsing[PARSING_KEPT];
static _Thread_local unsigned int parsing_next;

static void note_parsing(struct MHD_Connection *conn)
{
    for (int i = 0; i < PARSING_KEPT; i++)
        if (parsing[i] == conn)
            return;
    parsing[parsing_next++ % PARSING_KEPT] = conn;
}

static void forget_parsing(struct MHD_Connection *conn)
{
    for (int i = 0; i < PARSING_KEPT; i++)
        if (parsing[i] == conn)
            parsing[i] = NULL;
}

/* MHD_OPTION_URI_LOG_CALLBACK: the request line's URI, before libmicrohttpd
 * stores the query parameters in the connection's pool. When they would not
 * fit, libmicrohttpd 0.9.75 queues its own 431 and then loses it in a state
 * change: the client never gets an answer. So a query of more than
 * MAX_QUERY_PARAMS parameters, or of more than the pool holds beside the
 * read buffer (half the pool, or the request line) and room for headers, is
 * cut off here: the URI is libmicrohttpd's own writable buffer, where it
 * ends the path at the '?' itself next; ending the query there too leaves
 * no parameter to store. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    char *query = uri != NULL ? strchr(uri, '?') : NULL; /* NULL: a request line without URI */
    size_t params = 1, len, buffer;
    (void)cls;
    note_parsing(conn);
    if (query == NULL || query[1] == '\0')
        return NULL;
    len = strlen(uri);
    for (const char *c = query + 1; *c; c++)
        params += *c == '&';
    buffer = len + len / 4 > CONNECTION_MEMORY / 2 ? len + len / 4 : CONNECTION_MEMORY / 2;
    if (params <= MAX_QUERY_PARAMS &&
        buffer + params * QUERY_PARAM_COST + 4096 <= CONNECTION_MEMORY)
        return NULL;
    query[1] = '\0';
    return &too_many_params;
}

struct header_counts {
    int host, content_length, transfer_encoding;
    bool chunked;
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    struct header_counts *n = cls;
    (void)kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
        n->host++;
    else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        n->content_length++;
    else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        n->transfer_encoding++;
        n->chunked = value != NULL && strcasecmp(value, "chunked") == 0;
    }
    return MHD_YES;
}

/* Why the request's framing is ambiguous (RFC 9112 sections 3.2 and 6.3),
 * or NULL. libmicrohttpd would take Transfer-Encoding over Content-Length
 * and the first of two Content-Lengths; a proxy in front may read them the
 * other way, which is how requests are smuggled. Its own strict mode
 * (MHD_OPTION_STRICT_FOR_CLIENT) only checks Host, and answers that with an
 * HTML page sent with its status line twice (0.9.75): checked here instead. */
static const char *framing_error(struct MHD_Connection *conn, const char *version)
{
    struct header_counts n = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_header, &n);
    if (n.host == 0 && strcmp(version, MHD_HTTP_VERSION_1_1) == 0)
        return "an HTTP/1.1 request needs a Host header";
    if (n.host > 1)
        return "more than one Host header";
    if (n.transfer_encoding > 0 && n.content_length > 0)
        return "Transfer-Encoding and Content-Length together";
    if (n.content_length > 1)
        return "more than one Content-Length header";
    if (n.transfer_encoding > 1 || (n.transfer_encoding == 1 && !n.chunked))
        return "the only transfer coding accepted is a single 'chunked'";
    return NULL;
}

/* A Content-Length of digits only that fits in 64 bits. */
static bool decimal_u64(const char *s, bool *overflow)
{
    unsigned long long v = 0;
    *overflow = false;
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        if (v > (ULLONG_MAX - (unsigned long long)(*s - '0')) / 10)
            *overflow = true;
        v = v * 10 + (unsigned long long)(*s - '0');
    }
    return !*overflow;
}

/* libmicrohttpd 0.9.75 answers a Content-Length it cannot read (negative,
 * not a number, 2^64 or more) itself, before the server sees the request,
 * with an HTML page whose status line and headers it writes twice. Its log
 * message about it comes first, on the thread that is parsing that request,
 * before its answer is built: on_mhd_log then calls this, which answers the
 * connection with a problem document and shuts the socket's sending side,
 * so that libmicrohttpd's own answer cannot go out (EPIPE: it closes the
 * connection). The connection is found among the last PARSING_KEPT this
 * thread parsed as the one whose head is in (REQUEST_HEADER_SIZE), that
 * has no answer yet (HTTP_STATUS) and whose Content-Length is unreadable:
 * any other connection with such a header would have been answered
 * already. If it is not found (more request lines came in on this thread
 * meanwhile), libmicrohttpd's answer goes out as it is. Not with TLS (the
 * bytes would have to go through the TLS session). */
static void answer_bad_content_length(const struct http_server *srv)
{
    struct MHD_Connection *conn = NULL;
    const union MHD_ConnectionInfo *fd = NULL;
    const char *cl = NULL;
    bool overflow = false;
    enum problem_kind kind;
    char id[UUID_TEXT_LEN + 1], head[256], *body;
    json_t *doc;
    int n;
    if (srv->tls_cert != NULL)
        return;
    for (int i = 0; i < PARSING_KEPT && conn == NULL; i++) {
        struct MHD_Connection *c = parsing[i];
        if (c == NULL ||
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE) == NULL ||
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS) != NULL)
            continue;
        cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (cl != NULL && !decimal_u64(cl, &overflow) && fd != NULL)
            conn = c;
    }
    if (conn == NULL)
        return;
    forget_parsing(conn);
    kind = overflow ? PROBLEM_PAYLOAD_TOO_LARGE : PROBLEM_INVALID_HEADER;
    doc = problem_new(kind, overflow ? "the Content-Length is 2^64 or more"
                                     : "the Content-Length is not a decimal number", NULL);
    body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    uuid_new(id);
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\nConnection: close\r\n"
                 "Content-Type: application/problem+json\r\nX-Request-Id: %s\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 problem_status(kind), overflow ? "Content Too Large" : "Bad Request", id,
                 strlen(body));
    if (send(fd->connect_fd, head, (size_t)n, MSG_NOSIGNAL) == n)
        send(fd->connect_fd, body, strlen(body), MSG_NOSIGNAL);
    shutdown(fd->connect_fd, SHUT_WR);
    free(body);
}

/* libmicrohttpd's messages go to stderr, except the one it writes for every
 * connection closed at a connection limit (2,000 connections from one
 * address made 1,744 identical lines): that one at most every 10 s, with
 * how many came meanwhile. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static time_t last;
    static unsigned long skipped;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (strstr(msg, "Content-Length' header") != NULL &&
        (strncmp(msg, "Failed to parse", 15) == 0 || strncmp(msg, "Too large value", 15) == 0))
        answer_bad_content_length(cls);
    if (strstr(msg, "connection limit") != NULL) {
        time_t now = time(NULL);
        pthread_mutex_lock(&lock);
        if (now - last < 10) {
            skipped++;
            pthread_mutex_unlock(&lock);
            return;
        }
        if (skipped > 0)
            log_msg(LOG_WARNING, "http", "%lu more connections closed at a connection limit",
                    skipped);
        last = now;
        skipped = 0;
        pthread_mutex_unlock(&lock);
    }
    fputs(msg, stderr);
}

/* MHD_OPTION_NOTIFY_CONNECTION: a new connection gets the short timeout
 * for its first request head (on_request restores the idle timeout). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    const struct config *cfg = ((struct http_server *)cls)->app->cfg;
    (void)socket_context;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED)
        forget_parsing(conn);
    if (code == MHD_CONNECTION_NOTIFY_STARTED && cfg->header_timeout < cfg->connection_timeout)
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                  (unsigned int)cfg->header_timeout);
}

/* A request head is complete: the connection idles on the usual timeout. */
static void restore_idle_timeout(struct MHD_Connection *conn, const struct config *cfg)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_TIMEOUT);
    if (cfg->header_timeout < cfg->connection_timeout &&
        (info == NULL || info->connection_timeout != (unsigned int)cfg->connection_timeout))
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                  (unsigned int)cfg->connection_timeout);
}

/* The connection limit, within the descriptor limit: each connection is a
 * descriptor, as are the database connections (up to three pools), two per
 * worker thread (epoll, wake-up) and a margin for logs, listener and
 * libraries. The soft RLIMIT_NOFILE is raised toward the hard one when
 * needed; if even that is short, fewer connections are allowed (logged), so
 * that accept never fails for want of a descriptor. */
static unsigned int connection_limit(const struct config *cfg, unsigned int workers)
{
    struct rlimit rl;
    rlim_t reserve = 64 + 2 * (rlim_t)workers + 3 * (rlim_t)cfg->pool_size;
    rlim_t wanted = (rlim_t)cfg->max_connections + reserve;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= wanted)
        return (unsigned int)cfg->max_connections;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > wanted ? wanted : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur >= wanted)
        return (unsigned int)cfg->max_connections;
    rl.rlim_cur = rl.rlim_cur > reserve + 16 ? rl.rlim_cur - reserve : 16;
    log_msg(LOG_WARNING, "http", "the descriptor limit (ulimit -n) allows %u connections, not %d",
            (unsigned int)rl.rlim_cur, cfg->max_connections);
    return (unsigned int)rl.rlim_cur;
}

/* The probes, served during the drain too (/ready then answers 503). */
static bool is_probe(const char *url)
{
    return strcmp(url, "/health") == 0 || strcmp(url, "/ready") == 0 ||
           strcmp(url, "/metrics") == 0;
}

/* A body follows the request head (a Content-Length above 0, or chunked). */
static bool has_body_coming(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                       MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL ||
           (cl != NULL && strtoull(cl, NULL, 10) > 0);
}

/* Expect: 100-continue: the client waits for a word before sending its
 * body, so a refusal needs no reading of it. */
static bool expects_continue(struct MHD_Connection *conn)
{
    const char *e = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
    return e != NULL && strcasecmp(e, "100-continue") == 0;
}

/* A request that arrived during the drain. */
static enum MHD_Result send_refusal(struct MHD_Connection *conn, const char *url)
{
    struct response res = {0};
    respond_problem(&res, PROBLEM_SERVICE_UNAVAILABLE,
                    "the server is shutting down; retry on another instance", url);
    res.retry_after = 1;
    return send_response(conn, &res);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct http_server *srv = cls;
    struct request_ctx *ctx = *con_cls;
    size_t limit = srv->app->cfg->body_limit;

    if (ctx == NULL || ctx == (void *)&too_many_params) {
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *framing = framing_error(conn, version);
        bool overfull = ctx != NULL;
        unsigned long long declared = cl != NULL ? strtoull(cl, NULL, 10) : 0;
        ctx = calloc(1, sizeof(*ctx));
        ctx->srv = srv;
        *con_cls = ctx;
        clock_gettime(CLOCK_MONOTONIC, &ctx->start);
        ctx->route = -1;
        take_request_id(conn, ctx);
        current = ctx;
        restore_idle_timeout(conn, srv->app->cfg);
        /* Answered before its body, if any, is read: libmicrohttpd then
         * closes the connection. */
        if (framing != NULL)
            return send_problem(conn, PROBLEM_INVALID_HEADER, framing, url);
        if (overfull) {
            char detail[128];
            snprintf(detail, sizeof(detail),
                     "the query has more parameters than the server accepts (at most %d, "
                     "fewer when long)", MAX_QUERY_PARAMS);
            return send_problem(conn, PROBLEM_HEADERS_TOO_LARGE, detail, url);
        }
        /* Counted before draining is read, and http_drain_and_stop sets
         * draining before it reads the count: either this request is
         * waited for, or it sees draining and is refused. */
        atomic_fetch_add(&srv->in_flight, 1);
        ctx->counted = true;
        if (atomic_load(&srv->draining)) {
            atomic_fetch_sub(&srv->in_flight, 1);
            ctx->counted = false;
            if (!is_probe(url)) {
                ctx->refused = true;
                if (!has_body_coming(conn) || expects_continue(conn))
                    return send_refusal(conn, url);
                return MHD_YES; /* the body is read and dropped, then refused */
            }
        }
        if (declared > limit) {
            char detail[96];
            if (expects_continue(conn) || declared > DISCARD_MAX) {
                snprintf(detail, sizeof(detail), "the body exceeds the limit of %zu bytes",
                         limit);
                /* Answer before the body; MHD closes the connection after. */
                return send_problem(conn, PROBLEM_PAYLOAD_TOO_LARGE, detail, url);
            }
            ctx->too_large = ctx->declared_too_large = true; /* read and dropped, then 413 */
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (ctx->refused || ctx->too_large) {
            ctx->dropped += n;
            return ctx->dropped <= DISCARD_MAX ? MHD_YES : MHD_NO; /* MHD_NO: closed unanswered */
        }
        append_body(ctx, upload_data, n, limit);
        return MHD_YES;
    }
    current = ctx;
    if (ctx->refused)
        return send_refusal(conn, url);
    if (ctx->declared_too_large) {
        char detail[96];
        snprintf(detail, sizeof(detail), "the body exceeds the limit of %zu bytes", limit);
        return send_problem(conn, PROBLEM_PAYLOAD_TOO_LARGE, detail, url);
    }
    if (ctx->offload != NULL) { /* resumed: the long route's answer is ready */
        struct offload *o = ctx->offload;
        enum MHD_Result ret = send_response(conn, &o->res);
        ctx->offload = NULL;
        free(o);
        return ret;
    }
    return finish_request(srv, conn, method, url, ctx);
}

/* The access-log line of a finished request (accesslog.c). */
static void log_access(struct MHD_Connection *conn, struct request_ctx *ctx, double seconds,
                       enum MHD_RequestTerminationCode toe)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char addr[64] = "-";
    if (info != NULL && info->client_addr != NULL) {
        const struct sockaddr *sa = info->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, addr,
                      sizeof(addr));
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                      addr, sizeof(addr));
    }
    /* take_request_id keeps the id printable ASCII without '"' or '\\'. */
    accesslog_write(ctx->request_id,
                    ctx->route >= 0 ? route_name((enum route)ctx->route) : "unmatched", addr,
                    ctx->status, seconds * 1000, ctx->key_id[0] ? ctx->key_id : "-",
                    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct request_ctx *ctx = *con_cls;
    struct timespec end;
    double seconds;
    if (ctx == NULL || ctx == (void *)&too_many_params) { /* never reached on_request */
        *con_cls = NULL;
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    seconds = (double)(end.tv_sec - ctx->start.tv_sec) +
              (double)(end.tv_nsec - ctx->start.tv_nsec) / 1e9;
    metrics_record(ctx->route, ctx->status ? ctx->status : 500, seconds);
    if (srv->app->cfg->access_log)
        log_access(conn, ctx, seconds, toe);
    if (current == ctx)
        current = NULL;
    if (ctx->offload != NULL) { /* the client left before the answer was sent */
        discard_response(&ctx->offload->res);
        free(ctx->offload);
    }
    free(ctx->body);
    if (ctx->counted)
        atomic_fetch_sub(&srv->in_flight, 1);
    free(ctx);
    *con_cls = NULL;
}

/* Whole file into a NUL-terminated buffer (TLS PEM files); NULL on error. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && n < 1024 * 1024 &&
        fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
        }
    }
    fclose(f);
    return buf;
}

unsigned int http_worker_threads(int configured)
{
    long cpus;
    if (configured >= 0)
        return (unsigned int)configured;
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (unsigned int)(cpus * 4) : 8;
}

/* Everything but the daemon: the long-route threads (when started), the log
 * flusher (last lines out), the TLS texts and srv itself. */
static void release_server(struct http_server *srv)
{
    workq_stop(srv->long_routes); /* after the daemon stopped: nothing can be queued */
    accesslog_stop();
    free(srv->tls_cert);
    free(srv->tls_key);
    free(srv);
}

struct http_server *http_start(struct app *app)
{
    struct http_server *srv = calloc(1, sizeof(*srv));
    struct sockaddr_in6 a6 = {0};
    struct sockaddr_in a4 = {0};
    const struct sockaddr *addr;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    unsigned int workers = http_worker_threads(app->cfg->http_threads);

    srv->app = app;
    if (inet_pton(AF_INET, app->cfg->listen, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)app->cfg->port);
        addr = (const struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, app->cfg->listen, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)app->cfg->port);
        addr = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        log_msg(LOG_ERROR, "http", "--listen '%s' is not an IPv4 or IPv6 address",
                app->cfg->listen);
        free(srv);
        return NULL;
    }
    if (app->cfg->tls_cert[0] != '\0') {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            log_msg(LOG_ERROR, "http", "this libmicrohttpd has no TLS support");
            free(srv);
            return NULL;
        }
        srv->tls_cert = read_file(app->cfg->tls_cert);
        srv->tls_key = read_file(app->cfg->tls_key);
        if (srv->tls_cert == NULL || srv->tls_key == NULL) {
            log_msg(LOG_ERROR, "http", "cannot read --tls-cert/--tls-key files");
            free(srv->tls_cert);
            free(srv->tls_key);
            free(srv);
            return NULL;
        }
        flags |= MHD_USE_TLS;
    }
    /* One worker is the internal polling thread itself: no pool (libmicrohttpd
     * warns about a pool size of 0 or 1). */
    struct MHD_OptionItem pool_options[] = {
        {MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)workers, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_OptionItem tls_options[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, srv->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key},
        {MHD_OPTION_END, 0, NULL},
    };
    /* Workers with epoll (measured on 2 cores, 64 connections: 25-35 % less
     * server CPU per profile GET and 25-50 % more POSTs/s than a thread per
     * connection, whose threads mostly woke each other up), or the old mode. */
    srv->pooled = workers > 0;
    if (srv->pooled)
        flags |= MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    else
        flags |= MHD_USE_THREAD_PER_CONNECTION;
    accesslog_start();
    if (srv->pooled &&
        (srv->long_routes = workq_start(app->cfg->http_long_threads, app->cfg->http_long_queue,
                                        run_queued)) == NULL) {
        log_msg(LOG_ERROR, "http", "cannot start the long-route threads");
        release_server(srv);
        return NULL;
    }
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)app->cfg->port, NULL, NULL, on_request, srv,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv, /* first, or MHD warns */
        MHD_OPTION_ARRAY, workers > 1 ? pool_options : pool_options + 1,
        MHD_OPTION_ARRAY, srv->tls_cert ? tls_options : tls_options + 2,
        MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_CONNECTION_LIMIT, connection_limit(app->cfg, workers),
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)app->cfg->max_connections_per_ip,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)app->cfg->connection_timeout,
        /* Caps the request head (see CONNECTION_MEMORY). */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONNECTION_MEMORY,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_END);
    if (srv->daemon == NULL) {
        log_msg(LOG_ERROR, "http", "cannot listen on %s port %d", app->cfg->listen,
                app->cfg->port);
        release_server(srv);
        return NULL;
    }
    return srv;
}

int http_drain_and_stop(struct http_server *srv, int timeout_s)
{
    /* The daemon keeps its listening socket and keeps accepting: requests
     * arriving from here on are answered 503 with Connection: close (see
     * on_request), so clients are told at once instead of waiting in the
     * backlog, and kept-alive connections close after their next response.
     * The daemon is not quiesced: MHD_stop_daemon closes the listener
     * itself, after its worker threads have stopped (a quiesced listener
     * closed early aborted libmicrohttpd once: "Failed to remove listen FD
     * from epoll set"). */
    int left;
    atomic_store(&srv->draining, true);
    health_set_stopping(srv->app->health);
    refuse_queued_offloads(srv);
    for (int waited_ms = 0; atomic_load(&srv->in_flight) > 0 && waited_ms < timeout_s * 1000;
         waited_ms += 20)
        db_sleep_ms(20);
    left = atomic_load(&srv->in_flight);
    /* Past the drain timeout, the statements still running are cancelled
     * (their transactions roll back; the requests answer 503), so a value
     * run, which has no statement_timeout, cannot hold the shutdown either.
     * libmicrohttpd must not be stopped with a connection suspended: wait
     * for the long requests, cancelling again while they start new
     * statements. */
    for (int waited_ms = 0; atomic_load(&srv->in_flight) > 0 || atomic_load(&srv->offloaded) > 0;
         waited_ms += 20) {
        if (waited_ms % 500 == 0) {
            struct app *app = srv->app;
            db_pool_cancel_busy(app->pool);
            if (app->reads != app->pool)
                db_pool_cancel_busy(app->reads);
            if (app->replica != NULL && app->replica != app->reads)
                db_pool_cancel_busy(app->replica);
        }
        if (atomic_load(&srv->offloaded) == 0 && waited_ms >= 1000)
            break; /* the rest run on workers, which MHD_stop_daemon waits for */
        db_sleep_ms(20);
    }
    MHD_stop_daemon(srv->daemon);
    release_server(srv);
    return left;
}
