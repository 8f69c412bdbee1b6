/*
 * accesslog: one JSON line per request on stdout (request id, route,
 * client address, status, milliseconds, key id, whether the response was
 * sent completely). Lines are buffered by stdio and flushed every
 * ACCESS_LOG_FLUSH_MS by a ticker thread, and at stop: one write(2) per
 * line was 5-6 % of the server's CPU per profile GET (perf). The HTTP layer
 * calls accesslog_write from its completion callback.
 */
#ifndef CRM_ACCESSLOG_H
#define CRM_ACCESSLOG_H

#include <stdbool.h>

#define ACCESS_LOG_FLUSH_MS 100

/* Start the flusher (false if its thread cannot start: lines then go out
 * whenever stdio's buffer fills, and at stop). */
bool accesslog_start(void);

/* Stop the flusher and write what is buffered. */
void accesslog_stop(void);

/* One line. Every text must need no JSON escaping: the request id is
 * printable ASCII without '"' or '\\', the route a fixed name, the client a
 * numeric address, the key id a UUID or "-". */
void accesslog_write(const char *request_id, const char *route, const char *client, int status,
                     double ms, const char *key_id, bool completed);

#endif
