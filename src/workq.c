/*
 * workq: a singly linked FIFO under one mutex, one condition to wake the
 * threads, and a count of waiting places (reserved or queued) for the bound.
 */
#include "workq.h"

#include <pthread.h>
#include <stdlib.h>

struct workq {
    void (*run)(struct workq_item *item);
    int max_queued;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct workq_item *head, *tail;
    int waiting; /* places reserved or queued, not yet taken by a thread */
    bool stopping;
    pthread_t *threads;
    int thread_count;
};

static void *workq_main(void *arg)
{
    struct workq *q = arg;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        struct workq_item *item;
        while (q->head == NULL && !q->stopping)
            pthread_cond_wait(&q->wake, &q->lock);
        if (q->head == NULL)
            break; /* stopping, and nothing left */
        item = q->head;
        q->head = item->next;
        if (q->head == NULL)
            q->tail = NULL;
        q->waiting--;
        pthread_mutex_unlock(&q->lock);
        item->next = NULL;
        q->run(item);
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

struct workq *workq_start(int threads, int max_queued, void (*run)(struct workq_item *item))
{
    struct workq *q = calloc(1, sizeof(*q));
    q->run = run;
    q->max_queued = max_queued;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    q->threads = calloc((size_t)(threads > 0 ? threads : 1), sizeof(*q->threads));
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&q->threads[i], NULL, workq_main, q) != 0)
            break;
        q->thread_count++;
    }
    if (q->thread_count == 0) {
        workq_stop(q);
        return NULL;
    }
    return q;
}

bool workq_reserve(struct workq *q)
{
    bool ok;
    pthread_mutex_lock(&q->lock);
    ok = q->waiting < q->max_queued;
    if (ok)
        q->waiting++;
    pthread_mutex_unlock(&q->lock);
    return ok;
}

void workq_push(struct workq *q, struct workq_item *item, bool reserved)
{
    item->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (!reserved)
        q->waiting++;
    if (q->tail != NULL)
        q->tail->next = item;
    else
        q->head = item;
    q->tail = item;
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
}

struct workq_item *workq_take_all(struct workq *q)
{
    struct workq_item *items;
    pthread_mutex_lock(&q->lock);
    items = q->head;
    q->head = q->tail = NULL;
    q->waiting = 0;
    pthread_mutex_unlock(&q->lock);
    return items;
}

int workq_waiting(struct workq *q)
{
    int n;
    pthread_mutex_lock(&q->lock);
    n = q->waiting;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void workq_stop(struct workq *q)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_broadcast(&q->wake);
    pthread_mutex_unlock(&q->lock);
    for (int i = 0; i < q->thread_count; i++)
        pthread_join(q->threads[i], NULL);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->wake);
    free(q->threads);
    free(q);
}
