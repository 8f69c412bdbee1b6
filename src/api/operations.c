/*
 * operations: the routes for whoever runs the service: /health (the
 * process answers), /ready (the database answered the background check
 * and the server is not stopping) and /metrics (Prometheus
 * text, streamed).
 */
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "metrics.h"

void handle_health(struct app *app, const struct request *req, struct response *res)
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

void handle_metrics(struct app *app, const struct request *req, struct response *res)
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
void handle_ready(struct app *app, const struct request *req, struct response *res)
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
