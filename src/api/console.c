/*
 * console: the console's static files under /console/ (index.html for
 * "/console/", any other compiled-in file by its name). They hold no data,
 * so they need no key; every answer carries a strong ETag (304 when the
 * client's If-None-Match has it), Cache-Control: no-cache (revalidated at
 * every load, so a new binary's files are picked up at once) and, as pages
 * of this origin, a strict Content-Security-Policy (no inline script or
 * style, nothing from elsewhere, never framed) with nosniff. The files and
 * their types are console.h's, made at build time.
 */
#include <string.h>

#include "console.h"
#include "handlers.h"

#define CONSOLE_CSP                                                                            \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "        \
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

static const struct console_file *console_find(const char *name)
{
    for (int i = 0; i < console_file_count; i++)
        if (strcmp(console_files[i].name, name) == 0)
            return &console_files[i];
    return NULL;
}

/* If-None-Match (a list of entity tags, or "*") names etag. The tags are
 * quoted and of one length, so one cannot be found inside another. */
static bool etag_listed(const char *header, const char *etag)
{
    return header != NULL && (strcmp(header, "*") == 0 || strstr(header, etag) != NULL);
}

void handle_console(struct app *app, const struct request *req, struct response *res)
{
    const char *name = req->match->route == ROUTE_CONSOLE_INDEX ? "index.html" : req->match->file;
    const struct console_file *f = console_find(name);
    if (f == NULL) {
        respond_problem(res, PROBLEM_NOT_FOUND, "no such console file", req->path);
        return;
    }
    res->status = etag_listed(req->if_none_match, f->etag) ? 304 : 200;
    res->static_type = f->type;
    res->static_body = f->data;
    res->static_len = f->len;
    res->etag = f->etag;
    res->cache_control = "no-cache";
    res->csp = CONSOLE_CSP;
}
