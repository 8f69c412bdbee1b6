/*
 * console: the console's static files (console/ at the top of the tree:
 * HTML, CSS, ES modules, the vendored chart library), compiled into the
 * binary by tools/embed_files.py and served by api/console.c under
 * /console/. Each file carries its content type and a strong ETag made
 * from its bytes at build time.
 */
#ifndef CRM_CONSOLE_H
#define CRM_CONSOLE_H

#include <stddef.h>

struct console_file {
    const char *name; /* relative to console/: "app.js", "vendor/uPlot.iife.min.js" */
    const char *type; /* Content-Type */
    const char *etag; /* quoted, strong */
    const unsigned char *data;
    size_t len;
};

extern const struct console_file console_files[]; /* sorted by name */
extern const int console_file_count;

#endif
