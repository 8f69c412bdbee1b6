/*
 * cases: the vocabulary and rules of cases (docs/cases.md). Owns the
 * statuses and priorities (written once here; openapi and the CHECKs of
 * sql/017_cases.sql are compared with them by tests/unit/test_enums.c), the
 * status transitions, the part an interaction plays in a case (opens one,
 * follows one, answers one), and the bodies of POST /v1/customers/{id}/cases
 * and PATCH /v1/cases/{id}. Pure: no I/O; strings borrow from the JSON
 * document, which must outlive the structs.
 */
#ifndef CRM_CASES_H
#define CRM_CASES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "textutil.h"

#define CASE_SUBJECT_MAX 200
#define CASE_ASSIGNEE_MAX 100

bool case_status_valid(const char *name);
/* The i-th status in the order of the list below, NULL past the last. */
const char *case_status_name(int i);
bool case_priority_valid(const char *name);
/* "open, in_progress, resolved, closed" */
const char *case_status_list(void);
/* "low, normal, high, urgent" */
const char *case_priority_list(void);

/* Whether a case may move from status from to status to. Asking for the
 * status a case has already is no transition and always allowed (nothing
 * changes). from and to must be valid statuses. */
bool case_transition_allowed(const char *from, const char *to);

/* The statuses a case may be in to be moved to `to` (`to` itself
 * included), as a PostgreSQL array literal ("{open,in_progress,resolved}"),
 * for crm.case_patch, which checks the case's status under its row lock.
 * False when to is unknown or out is too small. */
bool case_allowed_from(const char *to, char *out, size_t cap);

/* What an interaction does to a case, from its type and whether it names
 * one (case_id): */
enum case_role {
    CASE_ROLE_NONE,      /* no case_id, not an opening type: nothing */
    CASE_ROLE_OPEN,      /* no case_id, an opening type (complaint): opens a case */
    CASE_ROLE_COMPLAINT, /* case_id, an opening type: follows it, reopens it if
                            resolved or closed */
    CASE_ROLE_RESPONSE,  /* case_id, a response type (outbound_message,
                            support_call): follows it, may set first_response_at */
    CASE_ROLE_FOLLOW,    /* case_id, any other type: follows it */
};
enum case_role case_role_of(const char *type, bool has_case);
/* "open", "complaint", "response", "follow"; NULL for CASE_ROLE_NONE (the
 * value the ingest statements receive). */
const char *case_role_name(enum case_role role);
/* The interaction types that open a case / that answer one ("complaint";
 * "outbound_message, support_call"), for docs and messages. */
const char *case_opening_type_list(void);
const char *case_response_type_list(void);

/* POST /v1/customers/{id}/cases: {source, channel, subject?, priority?,
 * assignee?, purchase_id?, opened_at?}. */
struct case_create {
    const char *source, *channel, *subject, *priority, *assignee, *opened_at;
    char purchase_id[UUID_TEXT_LEN + 1]; /* "" when absent */
};
bool validate_case_create(json_t *body, struct case_create *out, json_t *errors);

/* PATCH /v1/cases/{id}: at least one of status, priority, subject,
 * assignee, purchase_id (subject, assignee and purchase_id may be null:
 * removed). On success *patch is a new reference to the normalised patch
 * (purchase_id canonical) as crm.case_patch reads it, and status is the
 * status asked for (NULL when not given). */
bool validate_case_patch(json_t *body, json_t **patch, const char **status, json_t *errors);

#endif
