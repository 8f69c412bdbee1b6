/*
 * feed: event types, cursors and the types filter of the change feed. A
 * cursor is three decimal numbers joined by '-'; every part is checked to
 * be digits only, so it can travel as a statement parameter cast to xid8 and
 * bigint without a cast error. Types are checked against the catalogue, so
 * the array literal built from them needs no quoting.
 */
#include "feed.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const FEED_EVENT_TYPES[] = {
    "customer.created",   "customer.merged",    "customer.unmerged",
    "customer.erased",    "identifier.added",   "traits.changed",
    "interaction.created", "consent.changed",   "preferences.changed",
    "value.tier_changed", "segment.entered",  "segment.exited",
    "moment.due",         "case.opened",      "case.status_changed",
    "identifier.detached",
    "customer.stage_changed",
    NULL,
};

bool feed_event_type_known(const char *type, size_t len)
{
    for (int i = 0; FEED_EVENT_TYPES[i] != NULL; i++)
        if (strlen(FEED_EVENT_TYPES[i]) == len && memcmp(FEED_EVENT_TYPES[i], type, len) == 0)
            return true;
    return false;
}

void feed_cursor_start(struct feed_cursor *c)
{
    strcpy(c->xid, "0");
    strcpy(c->seq, "0");
    c->at = 0;
}

bool feed_cursor_is_start(const struct feed_cursor *c)
{
    return strcmp(c->xid, "0") == 0 && strcmp(c->seq, "0") == 0;
}

/* Copy a run of 1 to 19 digits from *p into out; advances *p. */
static bool take_number(const char **p, char *out, size_t cap)
{
    size_t n = strspn(*p, "0123456789");
    if (n == 0 || n > 19 || n >= cap)
        return false;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p += n;
    return true;
}

bool feed_cursor_parse(const char *text, struct feed_cursor *c)
{
    const char *p = text;
    char at[24];
    if (text == NULL || !take_number(&p, c->xid, sizeof(c->xid)) || *p++ != '-' ||
        !take_number(&p, c->seq, sizeof(c->seq)) || *p++ != '-' ||
        !take_number(&p, at, sizeof(at)) || *p != '\0')
        return false;
    errno = 0;
    c->at = strtoll(at, NULL, 10);
    return errno == 0;
}

bool feed_types_parse(const char *csv, char *out, size_t outcap, char *err, size_t errlen)
{
    const char *p = csv;
    size_t len = 0;
    if (outcap < 3)
        return false;
    out[len++] = '{';
    for (;;) {
        size_t n = strcspn(p, ",");
        if (!feed_event_type_known(p, n)) {
            snprintf(err, errlen, "unknown event type '%.*s' in types (known: customer.created, "
                     "customer.merged, customer.unmerged, customer.erased, identifier.added, "
                     "traits.changed, interaction.created, consent.changed, "
                     "preferences.changed, value.tier_changed, segment.entered, segment.exited, "
                     "moment.due, case.opened, case.status_changed)",
                     (int)(n > 64 ? 64 : n), p);
            return false;
        }
        if (len + n + 2 >= outcap) {
            snprintf(err, errlen, "types is too long");
            return false;
        }
        if (len > 1)
            out[len++] = ',';
        memcpy(out + len, p, n);
        len += n;
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    out[len++] = '}';
    out[len] = '\0';
    return true;
}
