/*
 * accesslog: the access-log line format and its flusher (a ticker calling
 * fflush(stdout)). stdio's own lock keeps the lines of concurrent workers
 * whole.
 */
#include "accesslog.h"

#include <stdio.h>

#include "ticker.h"

static struct ticker *flusher;

static void flush_stdout(void *ctx)
{
    (void)ctx;
    fflush(stdout);
}

bool accesslog_start(void)
{
    flusher = ticker_start(ACCESS_LOG_FLUSH_MS, flush_stdout, NULL);
    return flusher != NULL;
}

void accesslog_stop(void)
{
    ticker_stop(flusher);
    flusher = NULL;
    fflush(stdout);
}

void accesslog_write(const char *request_id, const char *route, const char *client, int status,
                     double ms, const char *key_id, bool completed)
{
    fprintf(stdout,
            "{\"request_id\":\"%s\",\"route\":\"%s\",\"client\":\"%s\",\"status\":%d,"
            "\"ms\":%.6g,\"key_id\":\"%s\",\"completed\":%s}\n",
            request_id, route, client, status, ms, key_id, completed ? "true" : "false");
}
