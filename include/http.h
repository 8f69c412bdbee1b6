/*
 * http: the libmicrohttpd front end. Owns connections (limits in all and per
 * client address, the request-head and idle timeouts), request framing
 * (ambiguous Content-Length/Transfer-Encoding/Host refused, query size) and
 * request bodies (size limit, UTF-8 check, JSON parsing, Content-Type check),
 * routing to the handlers, writing responses with the right headers, and
 * draining in-flight requests on shutdown.
 */
#ifndef CRM_HTTP_H
#define CRM_HTTP_H

#include "handlers.h"

struct http_server;

/* Worker threads for --http-threads N: N itself when N >= 0 (0 = one thread
 * per connection), else 4 per CPU. */
unsigned int http_worker_threads(int configured);

/* Start serving on app->cfg's address and port; NULL on failure (logged). */
struct http_server *http_start(struct app *app);

/* Stop taking work: from now on every response carries Connection: close,
 * requests arriving are answered 503 (but /health, /ready, which then says
 * 503 itself, and /metrics), and the long requests still queued are answered
 * 503; wait up to timeout_s for the requests that arrived before, then stop (after the running long
 * requests are done: they are bounded by the database's statement_timeout). Returns the number of requests still
 * running when it gave up waiting (0 = clean). */
int http_drain_and_stop(struct http_server *server, int timeout_s);

#endif
