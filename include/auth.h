/*
 * auth: who may call what. Owns the API-key format
 * ("crm_<32 hex key id>_<43 base64url secret>"), key generation from the
 * kernel's random source, reading the key from a request's headers, and the
 * role names (which role may call which route is router.c's table). Verifying a key against
 * the database (hash compare) and caching the answer is access.c's job.
 */
#ifndef CRM_AUTH_H
#define CRM_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "router.h"
#include "textutil.h"

#define API_KEY_LEN (4 + 32 + 1 + 43)

struct principal {
    char key_id[UUID_TEXT_LEN + 1];
    enum role role;
    char namespace_[65]; /* partner keys only */
};

bool role_parse(const char *name, enum role *out);
const char *role_name(enum role role);

/* Extract the key from "Authorization: Bearer <key>" or "X-API-Key: <key>"
 * (either may be NULL). On success writes the key text and its key id. */
bool api_key_parse(const char *authorization, const char *x_api_key,
                   char key[API_KEY_LEN + 1], char key_id[UUID_TEXT_LEN + 1]);

/* A new random key and its id; false if the random source failed. */
bool api_key_generate(char key[API_KEY_LEN + 1], char key_id[UUID_TEXT_LEN + 1]);

#endif
