/*
 * crm-bench-ceiling: the HTTP ceiling of bench/run.sh (issue 6). A bare
 * libmicrohttpd server started with the same daemon mode, flags and options
 * as src/http.c (worker threads with epoll, 4 per CPU, or one thread per
 * connection with THREADS 0; internal polling thread, ITC, same connection
 * limit, timeout, memory limit and listen backlog; not the server's
 * per-address limit, head timeout, URI check and logger, which cost a
 * little per connection, a scan of the URI and of the headers per request) that
 * answers every request with a small fixed JSON body, the size of the real
 * server's GET /health reply ({"status":"ok"} plus an X-Request-Id header).
 * No routing, no database, no JSON building, no access log: what wrk
 * measures against it is what libmicrohttpd and the kernel cost on this
 * machine, the most the real server could reach.
 *
 * Usage: crm-bench-ceiling PORT [THREADS]
 *        (listens on 127.0.0.1 until SIGINT/SIGTERM; THREADS as the server's
 *        --http-threads, default 4 per CPU)
 */
#define _POSIX_C_SOURCE 200809L /* sigwait, pthread_sigmask */

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char body[] = "{\"status\":\"ok\"}";
/* A fixed id of the real server's length (a UUID), so the reply has its size. */
static const char request_id[] = "00000000-0000-4000-8000-000000000000";

/* Same callback pattern as src/http.c: the first call only notes the
 * request, further calls take the upload data, the last one answers. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    static int seen;
    struct MHD_Response *r;
    enum MHD_Result ret;
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload_data;

    if (*con_cls == NULL) {
        *con_cls = &seen;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        *upload_data_size = 0; /* the body is read and dropped */
        return MHD_YES;
    }
    r = MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json; charset=utf-8");
    MHD_add_response_header(r, "X-Request-Id", request_id);
    ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    *con_cls = NULL;
}

int main(int argc, char **argv)
{
    struct sockaddr_in a4;
    struct MHD_Daemon *daemon;
    sigset_t stop;
    char *end;
    long port;
    int sig;
    /* src/http.c's flags (TLS and IPv6 are off in the benchmark). */
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long threads = cpus > 0 ? cpus * 4 : 8;

    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s PORT [THREADS]\n", argv[0]);
        return 2;
    }
    if (argc == 3) {
        threads = strtol(argv[2], &end, 10);
        if (end == argv[2] || *end != '\0' || threads < 0 || threads > 1024) {
            fprintf(stderr, "%s: THREADS must be 0..1024, got '%s'\n", argv[0], argv[2]);
            return 2;
        }
    }
    struct MHD_OptionItem pool_options[] = {
        {MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    if (threads > 0)
        flags |= MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    else
        flags |= MHD_USE_THREAD_PER_CONNECTION;
    port = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || port < 1 || port > 65535) {
        fprintf(stderr, "%s: PORT must be 1..65535, got '%s'\n", argv[0], argv[1]);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN); /* as src/main.c */
    /* Block the stop signals before any thread starts so only sigwait takes them. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    memset(&a4, 0, sizeof(a4));
    a4.sin_family = AF_INET;
    a4.sin_port = htons((uint16_t)port);
    a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* The real server's defaults: --max-connections 1024, --connection-timeout 30. */
    daemon = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, NULL,
                              MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&a4,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned int)1024,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
                              MHD_OPTION_ARRAY, threads > 1 ? pool_options : pool_options + 1,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16 * 1024,
                              MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                              MHD_OPTION_END);
    if (daemon == NULL) {
        fprintf(stderr, "%s: cannot listen on 127.0.0.1 port %ld\n", argv[0], port);
        return 1;
    }
    fprintf(stderr, "crm-bench-ceiling: listening on 127.0.0.1:%ld\n", port);
    if (sigwait(&stop, &sig) != 0)
        sig = 0;
    MHD_stop_daemon(daemon);
    fprintf(stderr, "crm-bench-ceiling: stopped by signal %d\n", sig);
    return 0;
}
