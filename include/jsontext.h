/*
 * jsontext: the server's growing text buffer (also for the segment SQL and
 * the metrics page, through jsontext_printf), made for JSON text written
 * straight into it, for documents
 * whose shape the code already knows (a batch of interactions for the
 * database). Building a jansson tree and dumping it costs an allocation per
 * value and a second pass; for a batch of 100 that was a quarter of the
 * server's CPU. Strings are escaped as RFC 8259 requires; jansson values
 * (free-form payloads) are dumped in place. An allocation failure is
 * remembered and reported by jsontext_take, so callers check once.
 */
#ifndef CRM_JSONTEXT_H
#define CRM_JSONTEXT_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct jsontext {
    char *buf;
    size_t len, cap;
    bool failed; /* an allocation failed; jsontext_take returns NULL */
};

void jsontext_init(struct jsontext *t);

/* Append text as it is (punctuation, or JSON the caller made). */
void jsontext_raw(struct jsontext *t, const char *text);

/* Append s as a JSON string literal: quoted, with '"', '\' and control
 * characters escaped. s must be valid UTF-8 (the server checks bodies). */
void jsontext_string(struct jsontext *t, const char *s);

/* Append "key":"value" inside an object, preceded by a comma unless it is
 * the object's first member (the last byte written is '{'). */
void jsontext_member(struct jsontext *t, const char *key, const char *value);

/* Append "key": and v in compact form, with the same comma rule. */
void jsontext_member_json(struct jsontext *t, const char *key, const json_t *v);

/* Append formatted text (printf), e.g. SQL or Prometheus lines: the one
 * growing text buffer of the server, whatever the text is. */
void jsontext_printf(struct jsontext *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void jsontext_vprintf(struct jsontext *t, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* The NUL-terminated text (the caller frees it), or NULL when an allocation
 * failed; t is empty afterwards. */
char *jsontext_take(struct jsontext *t);

void jsontext_free(struct jsontext *t);

#endif
