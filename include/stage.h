/*
 * stage: the vocabulary of the journey stage (docs/stage.md). The stages
 * and the phases of an interaction relative to a purchase are written once
 * here; the CHECKs of sql/019_stage.sql, the SQL of sql/functions/stage.sql
 * and the CustomerStage / InteractionPhase enums of openapi/ are compared
 * with them by tests/unit/test_enums.c. The rule itself is set-based SQL
 * (crm.stage_of); the C side names and checks. Pure: no I/O.
 */
#ifndef CRM_STAGE_H
#define CRM_STAGE_H

#include <stdbool.h>

/* prospect, onboarding, active, at_risk, lapsed, won_back (NULL-terminated) */
extern const char *const STAGES[];
/* before, during, after (NULL-terminated) */
extern const char *const PHASES[];

bool stage_valid(const char *name);
/* "prospect, onboarding, active, at_risk, lapsed, won_back" */
const char *stage_list(void);
/* "before, during, after" */
const char *phase_list(void);

#endif
