/*
 * value: the value recompute. Reads every customer's model inputs from
 * crm.value_inputs (set-based SQL), fits BG/NBD and Gamma-Gamma (clv.c) on
 * them, predicts P(alive), expected purchases, expected spend and CLV per
 * customer, stages the predictions with COPY and lets crm.value_finish
 * derive RFM scores and tiers, all in one transaction (one run at a time).
 */
#ifndef CRM_VALUE_H
#define CRM_VALUE_H

#include <jansson.h>

#include "db.h"

/* progress, when given, receives one-line human-readable messages. On
 * success *summary is the run ({run_id, as_of, customers, buyers, params,
 * log_likelihood, fit_seconds, customer_equity, tiers}). */
enum db_status value_recompute(struct db_pool *pool, const char *as_of,
                               void (*progress)(const char *message), json_t **summary,
                               char *err, size_t errlen);

#endif
