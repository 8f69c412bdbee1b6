/*
 * log: formats a diagnostic line into a buffer and writes it with one
 * fputs, so stdio's lock keeps it whole.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void log_msg(enum log_level level, const char *module, const char *fmt, ...)
{
    static const char *const LEVEL[] = {[LOG_INFO] = "", [LOG_WARNING] = "warning: ",
                                        [LOG_ERROR] = "error: "};
    char line[2048];
    int n = snprintf(line, sizeof(line), "crm-server: %s: %s", module, LEVEL[level]);
    va_list ap;
    size_t len;
    if (n < 0)
        return;
    va_start(ap, fmt);
    if ((size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    len = strlen(line);
    while (len > 0 && line[len - 1] == '\n')
        line[--len] = '\0';
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    line[len] = '\0';
    fputs(line, stderr);
}
