/*
 * webhook_policy: URL syntax, address classes, allow-lists and backoff.
 * Addresses are compared as bytes with prefix lengths; host names in the
 * allow-list match the URL's host exactly (case-insensitive), never a
 * suffix, so "example.com" does not permit "evil-example.com".
 */
#include "webhook_policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

bool webhook_url_parse(const char *url, struct webhook_url *out, char *err, size_t errlen)
{
    const char *p, *host, *host_end, *end;
    size_t len;
    memset(out, 0, sizeof(*out));
    if (url == NULL || (len = strlen(url)) == 0 || len > WEBHOOK_URL_MAX) {
        snprintf(err, errlen, "'url' must be 1 to %d characters", WEBHOOK_URL_MAX);
        return false;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f) {
            snprintf(err, errlen, "'url' may not contain spaces, control or non-ASCII characters");
            return false;
        }
    if (strncasecmp(url, "https://", 8) == 0) {
        out->https = true;
        p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else {
        snprintf(err, errlen, "'url' must be an http:// or https:// URL");
        return false;
    }
    end = p + strcspn(p, "/?#");
    if (memchr(p, '@', (size_t)(end - p)) != NULL) {
        snprintf(err, errlen, "'url' may not contain user information");
        return false;
    }
    if (*p == '[') {
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (host_end == NULL) {
            snprintf(err, errlen, "'url' has an unterminated IPv6 address");
            return false;
        }
        p = host_end + 1;
    } else {
        host = p;
        host_end = p + strcspn(p, ":/?#");
        if (host_end > end)
            host_end = end;
        p = host_end;
    }
    if (host_end == host || (size_t)(host_end - host) >= sizeof(out->host)) {
        snprintf(err, errlen, "'url' must name a host");
        return false;
    }
    memcpy(out->host, host, (size_t)(host_end - host));
    out->host[host_end - host] = '\0';
    out->port = out->https ? 443 : 80;
    if (*p == ':') {
        char *num_end;
        long port = strtol(p + 1, &num_end, 10);
        if (num_end == p + 1 || num_end != end || port < 1 || port > 65535) {
            snprintf(err, errlen, "'url' has an invalid port");
            return false;
        }
        out->port = (int)port;
    } else if (p != end) {
        snprintf(err, errlen, "'url' has an invalid host");
        return false;
    }
    return true;
}

/* addr within prefix/bits (bytes compared bit by bit). */
static bool in_prefix(const unsigned char *addr, const unsigned char *prefix, int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(addr, prefix, (size_t)whole) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (addr[whole] & mask) == (prefix[whole] & mask);
}

struct net {
    unsigned char prefix[16];
    int bits;
};

static const struct net V4_REFUSED[] = {
    {{0}, 8},                 /* "this" network, 0.0.0.0 */
    {{10}, 8},                /* private */
    {{100, 64}, 10},          /* shared address space (carrier-grade NAT) */
    {{127}, 8},               /* loopback */
    {{169, 254}, 16},         /* link-local (cloud metadata) */
    {{172, 16}, 12},          /* private */
    {{192, 0, 0}, 24},        /* IETF protocol assignments */
    {{192, 168}, 16},         /* private */
    {{198, 18}, 15},          /* benchmarking */
    {{224}, 4},               /* multicast */
    {{240}, 4},               /* reserved, broadcast */
};
static const struct net V6_REFUSED[] = {
    {{0}, 127},               /* :: and ::1 */
    {{0xfc}, 7},              /* unique local */
    {{0xfe, 0x80}, 10},       /* link-local */
    {{0xfe, 0xc0}, 10},       /* site-local (deprecated) */
    {{0xff}, 8},              /* multicast */
    {{0x20, 0x01, 0x0d, 0xb8}, 32}, /* documentation */
};

bool webhook_addr_public(int family, const unsigned char *addr)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};
    if (family == AF_INET6) {
        if (memcmp(addr, mapped, 12) == 0 || memcmp(addr, nat64, 12) == 0)
            return webhook_addr_public(AF_INET, addr + 12);
        for (size_t i = 0; i < sizeof(V6_REFUSED) / sizeof(V6_REFUSED[0]); i++)
            if (in_prefix(addr, V6_REFUSED[i].prefix, V6_REFUSED[i].bits))
                return false;
        return true;
    }
    if (family != AF_INET)
        return false;
    for (size_t i = 0; i < sizeof(V4_REFUSED) / sizeof(V4_REFUSED[0]); i++)
        if (in_prefix(addr, V4_REFUSED[i].prefix, V4_REFUSED[i].bits))
            return false;
    return true;
}

/* One allow-list entry: an address or CIDR (family, bytes, bits), or a host
 * name (family 0). False when it is neither. */
static bool parse_entry(const char *entry, int *family, unsigned char *bytes, int *bits)
{
    char text[128];
    const char *slash = strchr(entry, '/');
    size_t n = slash ? (size_t)(slash - entry) : strlen(entry);
    if (n == 0 || n >= sizeof(text))
        return false;
    memcpy(text, entry, n);
    text[n] = '\0';
    if (inet_pton(AF_INET, text, bytes) == 1) {
        *family = AF_INET;
        *bits = 32;
    } else if (inet_pton(AF_INET6, text, bytes) == 1) {
        *family = AF_INET6;
        *bits = 128;
    } else {
        if (slash != NULL)
            return false;
        for (size_t i = 0; i < n; i++)
            if (!isalnum((unsigned char)text[i]) && text[i] != '.' && text[i] != '-')
                return false;
        *family = 0;
        return true;
    }
    if (slash != NULL) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end != '\0' || b < 0 || b > *bits)
            return false;
        *bits = (int)b;
    }
    return true;
}

/* Call fn for each entry of the list (spaces stripped); stops when it returns true. */
static bool each_entry(const char *allow, bool (*fn)(const char *entry, void *ctx), void *ctx)
{
    const char *p = allow;
    while (p != NULL && *p != '\0') {
        char entry[160];
        size_t n = strcspn(p, ","), k = 0;
        for (size_t i = 0; i < n && k + 1 < sizeof(entry); i++)
            if (p[i] != ' ' && p[i] != '\t')
                entry[k++] = p[i];
        entry[k] = '\0';
        if (k > 0 && fn(entry, ctx))
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

struct match_ctx {
    const char *host;
    int family;
    const unsigned char *addr;
};

static bool entry_matches(const char *entry, void *arg)
{
    struct match_ctx *m = arg;
    unsigned char bytes[16];
    int family, bits;
    if (!parse_entry(entry, &family, bytes, &bits))
        return false;
    if (family == 0)
        return m->host != NULL && strcasecmp(entry, m->host) == 0;
    return family == m->family && m->addr != NULL && in_prefix(m->addr, bytes, bits);
}

bool webhook_allow_match(const char *allow, const char *host, int family,
                         const unsigned char *addr)
{
    struct match_ctx m = {host, family, addr};
    return each_entry(allow, entry_matches, &m);
}

struct valid_ctx {
    char *err;
    size_t errlen;
};

static bool entry_invalid(const char *entry, void *arg)
{
    struct valid_ctx *v = arg;
    unsigned char bytes[16];
    int family, bits;
    if (parse_entry(entry, &family, bytes, &bits))
        return false;
    snprintf(v->err, v->errlen, "'%.64s' is neither a host name, an address nor a CIDR", entry);
    return true;
}

bool webhook_allow_valid(const char *allow, char *err, size_t errlen)
{
    struct valid_ctx v = {err, errlen};
    return !each_entry(allow, entry_invalid, &v);
}

long long webhook_backoff_ms(int attempt, long long base_ms, long long max_ms, double unit)
{
    long long d = base_ms > 0 ? base_ms : 1;
    for (int i = 1; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    if (unit < 0)
        unit = 0;
    if (unit >= 1)
        unit = 0.999999;
    return d / 2 + (long long)(unit * (double)(d - d / 2));
}
