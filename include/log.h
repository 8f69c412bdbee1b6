/*
 * log: the server's diagnostic lines on stderr (the access log is
 * accesslog.c's, on stdout). One format for every module:
 *   crm-server: <module>: [error: |warning: ]<message>
 * written whole in one call (lines of concurrent threads never mix); a
 * trailing newline in the message (libpq's error texts end in one) is
 * dropped and one is added.
 */
#ifndef CRM_LOG_H
#define CRM_LOG_H

enum log_level { LOG_INFO, LOG_WARNING, LOG_ERROR };

void log_msg(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
