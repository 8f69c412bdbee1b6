/*
 * Unit tests for workq: the bound on reserved places, arrival order with
 * one thread, take_all handing back what waits, and stop running what is
 * queued before the threads end.
 */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>

#include "workq.h"
#include "test_helpers.h"

struct job {
    struct workq_item item;
    int id;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int ran[64], ran_count;
static int gate_open = 1; /* 0: run blocks until opened */

static void run(struct workq_item *item)
{
    struct job *j = (struct job *)(void *)item;
    pthread_mutex_lock(&lock);
    while (!gate_open)
        pthread_cond_wait(&cond, &lock);
    ran[ran_count++] = j->id;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void reset(int open)
{
    pthread_mutex_lock(&lock);
    ran_count = 0;
    gate_open = open;
    pthread_mutex_unlock(&lock);
}

static void open_gate(void)
{
    pthread_mutex_lock(&lock);
    gate_open = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

START_TEST(test_order_and_stop_runs_the_rest)
{
    struct job jobs[10];
    struct workq *q = workq_start(1, 100, run);
    reset(0); /* the thread blocks in the first job */
    ck_assert_ptr_nonnull(q);
    for (int i = 0; i < 10; i++) {
        jobs[i].id = i;
        ck_assert(workq_reserve(q));
        workq_push(q, &jobs[i].item, true);
    }
    open_gate();
    workq_stop(q); /* runs every queued job before the thread ends */
    ck_assert_int_eq(ran_count, 10);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(ran[i], i);
}
END_TEST

START_TEST(test_bound_and_take_all)
{
    struct job jobs[4];
    struct workq_item *left;
    int n = 0;
    struct workq *q = workq_start(1, 2, run);
    reset(0);
    jobs[0].id = 0;
    ck_assert(workq_reserve(q));
    workq_push(q, &jobs[0].item, true);
    /* wait until the thread holds job 0 (blocked at the gate): the queue is empty */
    while (workq_waiting(q) != 0)
        ;
    for (int i = 1; i <= 2; i++) {
        jobs[i].id = i;
        ck_assert(workq_reserve(q));
        workq_push(q, &jobs[i].item, true);
    }
    ck_assert(!workq_reserve(q)); /* two wait: full */
    jobs[3].id = 3;
    workq_push(q, &jobs[3].item, false); /* past the bound, on purpose */
    ck_assert_int_eq(workq_waiting(q), 3);
    left = workq_take_all(q);
    ck_assert_int_eq(workq_waiting(q), 0);
    for (struct workq_item *it = left; it != NULL; it = it->next)
        ck_assert_int_eq(((struct job *)(void *)it)->id, ++n);
    ck_assert_int_eq(n, 3);
    ck_assert(workq_reserve(q)); /* places are free again */
    open_gate();
    workq_stop(q); /* the reserved place holds no item: nothing more runs */
    ck_assert_int_eq(ran_count, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("workq");
    TCase *tc = tcase_create("queue");
    tcase_add_test(tc, test_order_and_stop_runs_the_rest);
    tcase_add_test(tc, test_bound_and_take_all);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
