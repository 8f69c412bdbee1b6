/*
 * ratelimit: token buckets by key id in an open-addressing table (see
 * ratelimit.h). Keys are hashed (text_hash) and probed linearly over at most
 * PROBE_LIMIT slots; a new key takes the first empty slot there, else the
 * one idle longest.
 */
#include "ratelimit.h"

#include "textutil.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_ID_MAX 40 /* a UUID's 36 characters and the NUL, with room */
#define PROBE_LIMIT 64

struct slot {
    char key_id[KEY_ID_MAX];
    double tokens;
    double updated; /* 0: empty */
};

struct ratelimit {
    double rate, burst;
    size_t mask; /* slots - 1 */
    struct slot *slots;
};

struct ratelimit *ratelimit_new(double rate_per_second, size_t slots)
{
    struct ratelimit *rl = calloc(1, sizeof(*rl));
    size_t n = 16;
    if (rl == NULL)
        return NULL;
    while (n < slots)
        n *= 2;
    rl->slots = calloc(n, sizeof(*rl->slots));
    if (rl->slots == NULL) {
        free(rl);
        return NULL;
    }
    rl->rate = rate_per_second;
    rl->burst = 2 * rate_per_second;
    rl->mask = n - 1;
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (rl == NULL)
        return;
    free(rl->slots);
    free(rl);
}

/* key_id's slot: its own, else a free one, else the one idle longest among
 * the probed (reset to a full bucket for key_id). */
static struct slot *find_slot(struct ratelimit *rl, const char *key_id, double now)
{
    size_t start = (size_t)text_hash(key_id) & rl->mask;
    struct slot *free_slot = NULL, *stalest = NULL;
    for (size_t i = 0; i < PROBE_LIMIT && i <= rl->mask; i++) {
        struct slot *s = &rl->slots[(start + i) & rl->mask];
        if (s->updated == 0) {
            if (free_slot == NULL)
                free_slot = s;
            continue;
        }
        if (strcmp(s->key_id, key_id) == 0)
            return s;
        if (stalest == NULL || s->updated < stalest->updated)
            stalest = s;
    }
    if (free_slot == NULL)
        free_slot = stalest;
    snprintf(free_slot->key_id, sizeof(free_slot->key_id), "%s", key_id);
    free_slot->tokens = rl->burst;
    free_slot->updated = now;
    return free_slot;
}

bool ratelimit_take(struct ratelimit *rl, const char *key_id, double now, int *retry_after)
{
    struct slot *s = find_slot(rl, key_id, now);
    s->tokens += (now - s->updated) * rl->rate;
    if (s->tokens > rl->burst)
        s->tokens = rl->burst;
    s->updated = now;
    if (s->tokens >= 1) {
        s->tokens -= 1;
        return true;
    }
    *retry_after = (int)ceil((1 - s->tokens) / rl->rate);
    if (*retry_after < 1)
        *retry_after = 1;
    return false;
}
