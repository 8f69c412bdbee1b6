/*
 * api: the contract between the HTTP adapter (http.c), the dispatcher
 * (api/dispatch.c) and the handler files (api/<domain>.c). Owns the
 * request and response structs and the helpers every handler file shares
 * (api/respond.c): responses, problem documents, query parameters, audit,
 * gone and blocked answers, partner scope, saved segments. No libmicrohttpd
 * here: http.c adapts connections to these structs. Handler files include
 * this header (through handlers.h) and their own store header, never each
 * other.
 */
#ifndef CRM_API_H
#define CRM_API_H

#include <jansson.h>
#include <stdbool.h>

#include "access.h"
#include "audit.h"
#include "auth.h"
#include "config.h"
#include "db.h"
#include "health.h"
#include "problem.h"
#include "router.h"

/* The one size of the buffers that receive a database error message. */
#define API_ERR_LEN 512

struct app {
    const struct config *cfg;
    struct db_pool *pool;    /* the primary */
    struct db_pool *replica; /* a streaming replica for reads, or NULL */
    struct db_pool *reads;   /* the read routes' pool: the replica's, or a small one on the primary */
    struct access *access;
    struct audit *audit;     /* read-audit rows */
    struct health *health;   /* what /ready answers: database checked in the background, stopping */
};

struct request {
    const char *method;
    const char *path;
    const struct route_match *match;
    json_t *body; /* parsed object for POST/PATCH, else NULL */
    const char *(*query)(void *ctx, const char *key); /* decoded query parameter or NULL */
    void *query_ctx;
    const struct principal *who; /* the caller's key; NULL on public routes */
    const char *min_lsn; /* CRM-Min-LSN header or NULL */
    const char *if_none_match; /* If-None-Match header or NULL (the console's files) */
    /* Where this request's reads go: the primary, or for the read routes
     * (route_reads_from_replica) the replica when one is configured and,
     * given min_lsn, has replayed that far. Set by handle_request. */
    struct db_pool *reads;
};

struct response {
    int status;
    json_t *body; /* owned */
    char *raw_body; /* owned; JSON text sent as is instead of body (profiles) */
    bool problem; /* body is application/problem+json */
    char content_location[96];
    char allow[32];
    int retry_after; /* seconds; 0 = no header */
    bool auth_challenge; /* send WWW-Authenticate (401) */
    char write_lsn[32]; /* CRM-Write-LSN after a write, with a replica configured */
    const char *read_from; /* CRM-Read-From on the read routes, with a replica configured */
    /* A streamed body instead of body (e.g. NDJSON exports): read returns
     * the bytes written to buf, 0 at the end, -1 on error (the response is
     * then cut short), or STREAM_NEEDS_FILL when nothing is buffered: the
     * server then calls fill, the blocking part (a database page), off the
     * HTTP worker where it can, and reads again; fill returns false on
     * failure (the response is cut short). fill may be NULL for streams that
     * never ask. free releases ctx when the response is done. */
    const char *stream_content_type;
    long (*stream_read)(void *ctx, char *buf, size_t max);
    bool (*stream_fill)(void *ctx);
    void (*stream_free)(void *ctx);
    void *stream_ctx;
    /* A static body instead of body (the console's compiled-in files):
     * static_len bytes at static_body, never freed, sent as static_type
     * (set: this kind of answer) with these headers when not NULL: ETag,
     * Cache-Control, and csp as Content-Security-Policy together with
     * X-Content-Type-Options: nosniff and Referrer-Policy: no-referrer.
     * Status 304 sends the headers without the body. */
    const char *static_type;
    const unsigned char *static_body;
    size_t static_len;
    const char *etag;
    const char *cache_control;
    const char *csp;
};

#define STREAM_NEEDS_FILL (-2L)

/* Record who's read of customer_id (audit.h); false when it cannot be
 * recorded, and res is then a 503: no personal data leaves unaudited. */
bool audit_read_or_fail(struct app *app, const struct request *req, struct response *res,
                        const char *action, const char *customer_id);

/* Fill res with a problem document. */
void respond_problem(struct response *res, enum problem_kind kind, const char *detail,
                     const char *instance);
void respond_json(struct response *res, int status, json_t *body);
/* 200-style answer with ready JSON text (taken over). */
void respond_raw_json(struct response *res, int status, char *text);
/* 422 with the errors array (stolen). */
void respond_validation(struct response *res, json_t *errors, const char *instance);
/* 503 for DB_UNAVAILABLE, else 500 (logged). */
void respond_db_failure(struct response *res, enum db_status st, const char *err,
                        const char *instance);
/* The end of a settings write whose SQL may refuse it as {"invalid": text}:
 * 422 validation-failed at /member with that text; else st's failure
 * (503/500) or 200 with out. Takes over out. */
void respond_settings(struct response *res, enum db_status st, json_t *out, const char *err,
                      const char *member, const char *instance);
/* The usual end of a read or write by id: st's failure (503/500), 404 with
 * not_found when out is NULL, else 200 with out (taken over). */
void respond_found(struct response *res, enum db_status st, json_t *out, const char *err,
                   const char *not_found, const char *instance);
/* A query parameter checked for UTF-8; false (and res filled) when invalid. */
bool query_param(const struct request *req, struct response *res, const char *key,
                 const char **value);
/* An integer query parameter in [min, max], def when absent; false (and res
 * filled with 400 invalid-query) when it is not one. */
bool int_param(const struct request *req, struct response *res, const char *key, int def,
               int min, int max, int *out);

struct segment_sql;
/* A saved segment by its id as given in a query ("segment_id"), compiled;
 * false when res was filled (400 bad id, 404 unknown, 500 rule no longer compiles). */
bool load_segment_by_text(struct app *app, const struct request *req, struct response *res,
                          const char *text, struct segment_sql *seg);

/* If doc is the database's answer for an erased customer ({"gone": true, ...}),
 * release it, fill res with 410 Gone and return true. */
bool respond_if_gone(struct response *res, json_t *doc, const char *instance);

/* Partner keys may only speak about their own namespace's external ids
 * (never by customer_id); PARTNER_SCOPE is the 403's detail. */
struct identifier_list;
bool partner_scope_ok(const struct principal *who, bool by_customer_id,
                      const struct identifier_list *ids);
extern const char PARTNER_SCOPE[];

/* True (and res filled with a 422 carrying out's "ignored") when the
 * database answered that every identifier was a blocked placeholder; prefix
 * is the JSON pointer of the item in a batch ("" otherwise). */
bool respond_if_blocked(json_t *out, const char *prefix, const char *path, struct response *res);

/* A saved segment by its canonical id, compiled; false when res was filled
 * (404 unknown, 500 rule no longer compiles). */
bool load_segment(struct app *app, const struct request *req, struct response *res,
                  const char *id, struct segment_sql *seg);

/* A traits object (resolve, PATCH traits) whose attributes feed a declared
 * moment kind (GET /v1/settings/moments) must give them as real dates:
 * false when res was filled (422, or the database failure). Traits without
 * attributes cost nothing: the database is asked only when they have some. */
bool moment_traits_ok(struct app *app, const struct request *req, struct response *res,
                      json_t *traits);

#endif
