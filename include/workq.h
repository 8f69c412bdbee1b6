/*
 * workq: a bounded FIFO of work items run by a fixed set of threads (the
 * HTTP layer's long-route threads). Items are intrusive: the caller embeds
 * a struct workq_item first in its own struct and gets it back in run. A
 * place in the queue is reserved before the item is pushed, so the caller
 * can answer "full" before it commits to queueing (suspending a connection).
 * No I/O; run does the work.
 */
#ifndef CRM_WORKQ_H
#define CRM_WORKQ_H

#include <stdbool.h>

struct workq_item {
    struct workq_item *next;
};

struct workq;

/* Start threads (at least one must start, else NULL) that call run on each
 * item in arrival order. max_queued bounds workq_reserve. */
struct workq *workq_start(int threads, int max_queued, void (*run)(struct workq_item *item));

/* Take a place for an item to come; false (nothing taken) when max_queued
 * items are already waiting. */
bool workq_reserve(struct workq *q);

/* Queue an item into a place reserved before, or (reserved false) into a
 * place taken now beyond the bound (work that must not be refused). */
void workq_push(struct workq *q, struct workq_item *item, bool reserved);

/* Empty the queue and return what waited, oldest first (the caller answers
 * them some other way); places are freed. Running items are not affected. */
struct workq_item *workq_take_all(struct workq *q);

/* Items waiting (reserved places included). */
int workq_waiting(struct workq *q);

/* Let the threads run what is queued, then stop them and free q. No item
 * may be pushed meanwhile. NULL is allowed. */
void workq_stop(struct workq *q);

#endif
