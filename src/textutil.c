/*
 * textutil: validation and encoding of untrusted text (UTF-8, UUIDs, RFC 3339
 * timestamps, calendar dates, base64url). Pure functions used by the request
 * validators and the router; see include/textutil.h for the contracts.
 */
#include "textutil.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <uuid/uuid.h>

bool utf8_valid(const char *buf, size_t len)
{
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t need;
        unsigned int cp;
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            need = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + need >= len)
            return false; /* truncated sequence */
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000))
            return false; /* overlong */
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += need + 1;
    }
    return true;
}

size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

void utf8_truncate(char *s)
{
    size_t len = strlen(s);
    while (len > 0 && !utf8_valid(s, len))
        s[--len] = '\0';
}

bool uuid_canonical(const char *text, char out[UUID_TEXT_LEN + 1])
{
    uuid_t u;
    if (text == NULL || strlen(text) != UUID_TEXT_LEN)
        return false;
    for (int i = 0; i < UUID_TEXT_LEN; i++) {
        bool dash = (i == 8 || i == 13 || i == 18 || i == 23);
        if (dash ? text[i] != '-' : !isxdigit((unsigned char)text[i]))
            return false;
    }
    if (uuid_parse(text, u) != 0)
        return false;
    uuid_unparse_lower(u, out);
    return true;
}

/* Random bytes for uuid_new, refilled from getrandom(2) 256 UUIDs at a time.
 * libuuid's uuid_generate_random() made six system calls per UUID (getrandom
 * plus getpid, getppid, getuid, gettid to re-seed random(3), whose lock the
 * request threads then shared); this makes one per 256 and takes no lock. */
static _Thread_local unsigned char random_pool[4096];
static _Thread_local size_t random_left;

static void random_bytes(unsigned char *out, size_t n)
{
    if (random_left < n) {
        size_t got = 0;
        while (got < sizeof(random_pool)) {
            ssize_t r = getrandom(random_pool + got, sizeof(random_pool) - got, 0);
            if (r < 0 && errno == EINTR)
                continue; /* a signal during a large request */
            if (r < 0)
                abort(); /* ENOSYS: Linux older than 3.17, which Debian does not run */
            got += (size_t)r;
        }
        random_left = sizeof(random_pool);
    }
    random_left -= n;
    memcpy(out, random_pool + random_left, n);
    memset(random_pool + random_left, 0, n); /* never hand out the same bytes twice */
}

void uuid_new(char out[UUID_TEXT_LEN + 1])
{
    uuid_t u;
    random_bytes(u, sizeof(u));
    u[6] = (unsigned char)((u[6] & 0x0F) | 0x40); /* version 4 */
    u[8] = (unsigned char)((u[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    uuid_unparse_lower(u, out);
}

void uuid_v7_make(uint64_t ms, const unsigned char random[10], char out[UUID_TEXT_LEN + 1])
{
    uuid_t u;
    for (int i = 0; i < 6; i++)
        u[i] = (unsigned char)(ms >> (40 - 8 * i));
    memcpy(u + 6, random, 10);
    u[6] = (unsigned char)((u[6] & 0x0F) | 0x70); /* version 7 */
    u[8] = (unsigned char)((u[8] & 0x3F) | 0x80); /* RFC 9562 variant */
    uuid_unparse_lower(u, out);
}

static _Thread_local uint64_t v7_last_ms;

void uuid_new_v7(char out[UUID_TEXT_LEN + 1])
{
    struct timespec now;
    unsigned char r[10];
    uint64_t ms;
    clock_gettime(CLOCK_REALTIME, &now);
    ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
    if (ms < v7_last_ms)
        ms = v7_last_ms; /* the clock stepped back: keep the order */
    v7_last_ms = ms;
    random_bytes(r, sizeof(r));
    uuid_v7_make(ms, r, out);
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

static bool date_part_valid(const char *s, int min_year, int max_year)
{
    int y = digits(s, 4), m, d;
    if (y < 0 || s[4] != '-' || s[7] != '-')
        return false;
    m = digits(s + 5, 2);
    d = digits(s + 8, 2);
    if (y < min_year || y > max_year || m < 1 || m > 12 || d < 1)
        return false;
    return d <= days_in_month(y, m);
}

bool date_valid(const char *text, int min_year, int max_year)
{
    return text != NULL && strlen(text) == 10 && date_part_valid(text, min_year, max_year);
}

bool rfc3339_valid(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    const char *p;
    int hh, mm, ss;
    if (len < 20 || !date_part_valid(s, 1900, 2999))
        return false;
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
        return false;
    hh = digits(s + 11, 2);
    mm = digits(s + 14, 2);
    ss = digits(s + 17, 2);
    if (s[13] != ':' || s[16] != ':' || hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 60)
        return false;
    p = s + 19;
    if (*p == '.') {
        int n = 0;
        p++;
        while (isdigit((unsigned char)*p)) {
            p++;
            n++;
        }
        if (n < 1 || n > 9)
            return false;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return true;
    if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh = digits(p + 1, 2), om = digits(p + 4, 2);
        return oh >= 0 && oh <= 23 && om >= 0 && om <= 59;
    }
    return false;
}

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *base64url_encode(const unsigned char *data, size_t len)
{
    char *out = malloc(len / 3 * 4 + 5);
    size_t o = 0, i = 0;
    if (out == NULL)
        return NULL;
    for (; i + 2 < len; i += 3) {
        unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8 | data[i + 2];
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
        out[o++] = B64URL[v >> 6 & 63];
        out[o++] = B64URL[v & 63];
    }
    if (len - i == 1) {
        unsigned v = (unsigned)data[i] << 16;
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
    } else if (len - i == 2) {
        unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8;
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
        out[o++] = B64URL[v >> 6 & 63];
    }
    out[o] = '\0';
    return out;
}

long base64url_decode(const char *text, unsigned char *out, size_t outcap)
{
    unsigned v = 0;
    int bits = 0;
    size_t o = 0;
    for (const char *p = text; *p; p++) {
        const char *at = strchr(B64URL, *p);
        if (at == NULL || *p == '\0')
            return -1;
        v = v << 6 | (unsigned)(at - B64URL);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 >= outcap)
                return -1;
            out[o++] = (unsigned char)(v >> bits & 0xFF);
        }
    }
    if (bits >= 6) /* a lone trailing character cannot be valid */
        return -1;
    out[o] = '\0';
    return (long)o;
}

/* Hex digits at text, at least 1 and at most 8; returns how many, or 0. */
static size_t hex_run(const char *text)
{
    size_t n = 0;
    while (n < 9 && isxdigit((unsigned char)text[n]))
        n++;
    return n <= 8 ? n : 0;
}

bool pg_lsn_valid(const char *text)
{
    size_t hi = hex_run(text), lo;
    if (hi == 0 || text[hi] != '/')
        return false;
    lo = hex_run(text + hi + 1);
    return lo > 0 && text[hi + 1 + lo] == '\0';
}

uint64_t text_hash(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static pthread_mutex_t name_list_lock = PTHREAD_MUTEX_INITIALIZER;

const char *name_list_text(struct name_list *l)
{
    if (__atomic_load_n(&l->ready, __ATOMIC_ACQUIRE))
        return l->text;
    pthread_mutex_lock(&name_list_lock);
    if (!l->ready) {
        size_t len = 0;
        l->text[0] = '\0';
        for (int i = 0; l->names[i] != NULL && len < sizeof(l->text); i++)
            len += (size_t)snprintf(l->text + len, sizeof(l->text) - len, "%s%s",
                                    i > 0 ? ", " : "", l->names[i]);
        __atomic_store_n(&l->ready, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&name_list_lock);
    return l->text;
}
