/*
 * survivorship: the rules that pick which source's value of a trait is the
 * trait (docs/identity.md, "Survivorship"). Owns the rule names (written
 * once here; openapi's SurvivorshipRuleName enum and the CHECK of
 * crm.survivorship_rules in sql/021_survivorship.sql are compared with them
 * by tests/unit/test_enums.c) and the body of PUT /v1/settings/survivorship.
 * Pure: no I/O.
 */
#ifndef CRM_SURVIVORSHIP_H
#define CRM_SURVIVORSHIP_H

#include <jansson.h>
#include <stdbool.h>

#define SURVIVORSHIP_SOURCES_MAX 32 /* sources of one source_priority list */
#define SURVIVORSHIP_TRAITS_MAX 200 /* trait names with a rule of their own */

bool survivorship_rule_valid(const char *name);
/* "most_recent, source_priority, most_frequent, first_seen" */
const char *survivorship_rule_list(void);

/* Whether name may carry a rule: a trait of the traits object
 * (first_name, last_name, birthday, gender, address) or one attribute,
 * "attributes.<key>" with a key of 1 to 64 characters. */
bool survivorship_trait_valid(const char *name);

/* The body of PUT /v1/settings/survivorship: {"default": rule, "traits":
 * {name: rule}}, both optional, where a rule is {"rule": name, "sources":
 * [...]} and sources (1 to SURVIVORSHIP_SOURCES_MAX distinct source names)
 * is required by source_priority and refused by the others. Adds one error
 * per problem to errors (JSON pointers); true when there is none. */
bool validate_survivorship(json_t *body, json_t *errors);

#endif
