/*
 * http: the libmicrohttpd front end. Owns connections and request bodies
 * (size limit, UTF-8 check, JSON parsing, Content-Type check), routing to
 * the handlers, writing responses with the right headers, and draining
 * in-flight requests on shutdown.
 */
#ifndef CRM_HTTP_H
#define CRM_HTTP_H

#include "handlers.h"

struct http_server;

/* Start serving on app->cfg's address and port; NULL on failure (logged). */
struct http_server *http_start(struct app *app);

/* Stop accepting, wait up to timeout_s for in-flight requests, then stop.
 * Returns the number of requests still running when it gave up (0 = clean). */
int http_drain_and_stop(struct http_server *server, int timeout_s);

#endif
