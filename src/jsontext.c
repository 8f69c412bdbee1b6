/*
 * jsontext: JSON text appended to a growing buffer (see jsontext.h). The
 * buffer doubles when full; after a failed allocation every append is a
 * no-op and jsontext_take answers NULL.
 */
#include "jsontext.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jsontext_init(struct jsontext *t)
{
    t->buf = NULL;
    t->len = t->cap = 0;
    t->failed = false;
}

/* Room for n more bytes plus the final NUL. */
static bool reserve(struct jsontext *t, size_t n)
{
    size_t cap;
    char *grown;
    if (t->failed)
        return false;
    if (t->len + n + 1 <= t->cap)
        return true;
    cap = t->cap ? t->cap : 256;
    while (cap < t->len + n + 1)
        cap *= 2;
    grown = realloc(t->buf, cap);
    if (grown == NULL) {
        t->failed = true;
        return false;
    }
    t->buf = grown;
    t->cap = cap;
    return true;
}

static void append(struct jsontext *t, const char *bytes, size_t n)
{
    if (!reserve(t, n))
        return;
    memcpy(t->buf + t->len, bytes, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

void jsontext_raw(struct jsontext *t, const char *text)
{
    append(t, text, strlen(text));
}

void jsontext_string(struct jsontext *t, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s; /* start of the bytes not yet copied */
    append(t, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[7];
        size_t n = 2;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        append(t, run, (size_t)(s - run));
        run = s + 1;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            n = 6;
        }
        append(t, esc, n);
    }
    append(t, run, (size_t)(s - run));
    append(t, "\"", 1);
}

static void member_key(struct jsontext *t, const char *key)
{
    if (t->len > 0 && t->buf[t->len - 1] != '{')
        append(t, ",", 1);
    jsontext_string(t, key);
    append(t, ":", 1);
}

void jsontext_member(struct jsontext *t, const char *key, const char *value)
{
    member_key(t, key);
    jsontext_string(t, value);
}

static int dump_chunk(const char *buffer, size_t size, void *data)
{
    struct jsontext *t = data;
    append(t, buffer, size);
    return t->failed ? -1 : 0;
}

void jsontext_member_json(struct jsontext *t, const char *key, const json_t *v)
{
    member_key(t, key);
    if (json_dump_callback(v, dump_chunk, t, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
        t->failed = true;
}

void jsontext_vprintf(struct jsontext *t, const char *fmt, va_list ap)
{
    va_list again;
    int n;
    va_copy(again, ap);
    n = vsnprintf(NULL, 0, fmt, ap);
    if (n >= 0 && reserve(t, (size_t)n)) {
        vsnprintf(t->buf + t->len, (size_t)n + 1, fmt, again);
        t->len += (size_t)n;
    }
    va_end(again);
}

void jsontext_printf(struct jsontext *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    jsontext_vprintf(t, fmt, ap);
    va_end(ap);
}

char *jsontext_take(struct jsontext *t)
{
    char *out = NULL;
    if (!t->failed && reserve(t, 0)) {
        t->buf[t->len] = '\0';
        out = t->buf;
    } else
        free(t->buf);
    jsontext_init(t);
    return out;
}

void jsontext_free(struct jsontext *t)
{
    free(t->buf);
    jsontext_init(t);
}
