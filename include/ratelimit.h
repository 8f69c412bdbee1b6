/*
 * ratelimit: a token bucket per API key id (rate tokens per second, a burst
 * of twice that), kept in a fixed open-addressing table so a request costs
 * one hash and a few probes whatever the number of keys. When a new key
 * finds no free slot among its probes (64; with the table at most half
 * full that does not happen in practice), it takes the one idle longest:
 * that key's bucket had refilled anyway unless it was used within the last
 * two seconds. Not thread-safe: the caller locks.
 */
#ifndef CRM_RATELIMIT_H
#define CRM_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>

struct ratelimit;

/* slots is rounded up to a power of two (at least 16); NULL when out of memory. */
struct ratelimit *ratelimit_new(double rate_per_second, size_t slots);
void ratelimit_free(struct ratelimit *rl);

/* Take one token from key_id's bucket at now (monotonic seconds, > 0). False when
 * the bucket is empty; *retry_after is then the seconds until one is back
 * (at least 1). */
bool ratelimit_take(struct ratelimit *rl, const char *key_id, double now, int *retry_after);

#endif
