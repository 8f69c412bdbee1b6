/*
 * stage: the journey stages and the phases of an interaction relative to a
 * purchase, in the order the rule and the KPIs list them (docs/stage.md).
 * A customer without a purchase is a prospect; onboarding while the first
 * purchase is recent; active; at_risk on a long silence or a high churn
 * risk; lapsed on a longer one; won_back after a purchase that ends a
 * lapse. The decision is SQL (crm.stage_of, sql/functions/stage.sql); this
 * file is the one list the segment field, the contract and the schema are
 * checked against.
 */
#include "stage.h"

#include "textutil.h"
#include "validate.h"

const char *const STAGES[] = {"prospect", "onboarding", "active", "at_risk", "lapsed",
                               "won_back", NULL};
const char *const PHASES[] = {"before", "during", "after", NULL};

bool stage_valid(const char *name)
{
    return name_in_list(STAGES, name);
}

const char *stage_list(void)
{
    static struct name_list names = {.names = STAGES};
    return name_list_text(&names);
}

const char *phase_list(void)
{
    static struct name_list names = {.names = PHASES};
    return name_list_text(&names);
}
