/*
 * handlers: the API operations. Each handler takes a routed request whose
 * body (if any) is already a parsed JSON object, validates it, calls the
 * store and fills in a response (status, JSON body, headers). No libmicrohttpd
 * here: the HTTP plumbing in http.c adapts connections to these structs.
 */
#ifndef CRM_HANDLERS_H
#define CRM_HANDLERS_H

#include <jansson.h>
#include <stdbool.h>

#include "config.h"
#include "db.h"
#include "problem.h"
#include "router.h"

struct app {
    const struct config *cfg;
    struct db_pool *pool;
};

struct request {
    const char *method;
    const char *path;
    const struct route_match *match;
    json_t *body; /* parsed object for POST/PATCH, else NULL */
    const char *(*query)(void *ctx, const char *key); /* decoded query parameter or NULL */
    void *query_ctx;
};

struct response {
    int status;
    json_t *body; /* owned */
    bool problem; /* body is application/problem+json */
    char content_location[96];
    char allow[32];
    int retry_after; /* seconds; 0 = no header */
};

void handle_request(struct app *app, const struct request *req, struct response *res);

/* Fill res with a problem document. */
void respond_problem(struct response *res, enum problem_kind kind, const char *detail,
                     const char *instance);

#endif
