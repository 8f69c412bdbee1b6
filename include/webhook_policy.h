/*
 * webhook_policy: the rules of webhook delivery that need no network. Owns
 * what a webhook URL may look like (http or https, a host, no user info),
 * which destination addresses are refused (loopback, private, link-local,
 * shared, multicast, reserved, unspecified; IPv4-mapped IPv6 as its IPv4),
 * the allow-list that can permit them (comma-separated CIDRs, addresses or
 * host names), and the retry schedule (exponential backoff with jitter).
 * Pure: no I/O (resolving a host is webhook.c's).
 */
#ifndef CRM_WEBHOOK_POLICY_H
#define CRM_WEBHOOK_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#define WEBHOOK_URL_MAX 2048

struct webhook_url {
    bool https;
    char host[256]; /* without IPv6 brackets */
    int port;
};

/* Parse and check a webhook URL; false with a reason in err. */
bool webhook_url_parse(const char *url, struct webhook_url *out, char *err, size_t errlen);

/* True for an address a webhook may reach without an allow-list entry.
 * family is AF_INET (addr: 4 bytes) or AF_INET6 (16 bytes). */
bool webhook_addr_public(int family, const unsigned char *addr);

/* True when the allow-list (comma-separated; spaces ignored) names host
 * (case-insensitive) or an entry (address or CIDR) contains addr. An
 * invalid entry matches nothing. */
bool webhook_allow_match(const char *allow, const char *host, int family,
                         const unsigned char *addr);

/* Check an allow-list's syntax; false with the bad entry in err. */
bool webhook_allow_valid(const char *allow, char *err, size_t errlen);

/* Delay before retry number attempt (1 = after the first failure): base_ms
 * doubled per attempt, at most max_ms, then jittered to [d/2, d) by unit, a
 * random number in [0, 1). */
long long webhook_backoff_ms(int attempt, long long base_ms, long long max_ms, double unit);

#endif
