/*
 * Unit tests for ratelimit: the token bucket's burst, refill and
 * Retry-After, one bucket per key for many keys, and which key loses its
 * slot when the table is full.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "ratelimit.h"
#include "test_helpers.h"

static int take_all(struct ratelimit *rl, const char *key, double now)
{
    int n = 0, retry = 0;
    while (ratelimit_take(rl, key, now, &retry))
        n++;
    return n;
}

START_TEST(test_burst_refill_and_retry_after)
{
    struct ratelimit *rl = ratelimit_new(10, 64);
    int retry = 0;
    ck_assert_int_eq(take_all(rl, "k1", 100.0), 20); /* burst: twice the rate */
    ck_assert(!ratelimit_take(rl, "k1", 100.0, &retry));
    ck_assert_int_eq(retry, 1);
    ck_assert_int_eq(take_all(rl, "k1", 100.5), 5); /* 10/s for half a second */
    ck_assert_int_eq(take_all(rl, "k1", 200.0), 20); /* refills to the burst, no more */
    ratelimit_free(rl);

    rl = ratelimit_new(1, 16);
    ck_assert_int_eq(take_all(rl, "slow", 1.0), 2);
    ck_assert(!ratelimit_take(rl, "slow", 1.0, &retry));
    ck_assert_int_eq(retry, 1); /* one token is back in a second */
    ck_assert(!ratelimit_take(rl, "slow", 1.25, &retry));
    ck_assert_int_eq(retry, 1);
    ck_assert(ratelimit_take(rl, "slow", 2.0, &retry));
    ratelimit_free(rl);
}
END_TEST

START_TEST(test_keys_have_buckets_of_their_own)
{
    struct ratelimit *rl = ratelimit_new(5, 4096);
    char key[40];
    int retry;
    /* 2,000 keys (under half the table): draining one leaves every other
     * one as it was. */
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        ck_assert(ratelimit_take(rl, key, 10.0, &retry));
    }
    ck_assert_int_eq(take_all(rl, "key-7", 10.0), 9);
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        if (i != 7)
            ck_assert_int_eq(take_all(rl, key, 10.0), 9);
    }
    /* Still drained: its state was kept, not reset to a full bucket. */
    ck_assert(!ratelimit_take(rl, "key-7", 10.0, &retry));
    ratelimit_free(rl);
}
END_TEST

START_TEST(test_a_full_table_evicts_the_idle_key)
{
    struct ratelimit *rl = ratelimit_new(1, 16); /* 16 slots: every key probes them all */
    char key[40];
    int retry;
    for (int i = 0; i < 16; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_int_eq(take_all(rl, key, 100.0 + i), 2);
    }
    /* A 17th key takes k0's slot (idle longest); the others keep theirs. */
    ck_assert(ratelimit_take(rl, "new", 200.0, &retry));
    for (int i = 1; i < 16; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_msg(!ratelimit_take(rl, key, 100.0 + i, &retry), "%s lost its state", key);
    }
    ck_assert_int_eq(take_all(rl, "new", 200.0), 1);
    ratelimit_free(rl);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ratelimit");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_burst_refill_and_retry_after);
    tcase_add_test(tc, test_keys_have_buckets_of_their_own);
    tcase_add_test(tc, test_a_full_table_evicts_the_idle_key);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
