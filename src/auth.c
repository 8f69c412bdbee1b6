/*
 * auth: key format, roles and the permission table. Keys carry their id so
 * that verification is one primary-key lookup plus a hash compare in the
 * database; the secret part has 256 bits from getrandom(2).
 */
#include "auth.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/random.h>

static const char *const ROLE_NAMES[ROLE_COUNT] = {
    [ROLE_FRONT_OFFICE] = "front_office", [ROLE_CALL_CENTER] = "call_center",
    [ROLE_MARKETING] = "marketing",       [ROLE_PARTNER] = "partner",
    [ROLE_ADMIN] = "admin",
};

bool role_parse(const char *name, enum role *out)
{
    for (int r = 0; r < ROLE_COUNT; r++)
        if (name != NULL && strcmp(name, ROLE_NAMES[r]) == 0) {
            *out = (enum role)r;
            return true;
        }
    return false;
}

const char *role_name(enum role role)
{
    return role >= 0 && role < ROLE_COUNT ? ROLE_NAMES[role] : "?";
}

bool route_is_public(enum route route)
{
    return route == ROUTE_HEALTH || route == ROUTE_READY || route == ROUTE_METRICS;
}

/* Bit per role. */
#define FO (1u << ROLE_FRONT_OFFICE)
#define CC (1u << ROLE_CALL_CENTER)
#define MK (1u << ROLE_MARKETING)
#define PA (1u << ROLE_PARTNER)

static unsigned int allowed_roles(enum route route)
{
    switch (route) {
    case ROUTE_CUSTOMER_RESOLVE:
    case ROUTE_INTERACTION_CREATE:
    case ROUTE_INTERACTION_BATCH:
        return FO | CC | PA;
    case ROUTE_CUSTOMER_TRAITS:
        return FO | CC;
    case ROUTE_CUSTOMER_LOOKUP:
    case ROUTE_CUSTOMER_GET:
    case ROUTE_CUSTOMER_TIMELINE:
    case ROUTE_CUSTOMER_MERGES:
        return CC;
    case ROUTE_SEGMENT_CREATE:
    case ROUTE_SEGMENT_LIST:
    case ROUTE_SEGMENT_PREVIEW:
    case ROUTE_SEGMENT_GET:
    case ROUTE_SEGMENT_DELETE:
    case ROUTE_SEGMENT_CUSTOMERS:
    case ROUTE_SEGMENT_EXPORT:
    case ROUTE_VALUE_RECOMPUTE:
    case ROUTE_KPIS:
        return MK;
    case ROUTE_PREFERENCES_GET:
    case ROUTE_PREFERENCES_PATCH:
    case ROUTE_CONSENTS_LIST:
    case ROUTE_CONSENT_CREATE:
        return FO | CC;
    case ROUTE_CONTACT_DECISION:
        return FO | CC | MK;
    case ROUTE_MOMENTS:
        return MK;
    default:
        return 0; /* admin only (key management) */
    }
}

bool role_allows(enum role role, enum route route)
{
    if (route_is_public(route) || role == ROLE_ADMIN)
        return true;
    return (allowed_roles(route) & (1u << role)) != 0;
}

static bool key_shape_valid(const char *key, char key_id[UUID_TEXT_LEN + 1])
{
    char text[UUID_TEXT_LEN + 1];
    const char *hex = key + 4;
    if (strlen(key) != API_KEY_LEN || strncmp(key, "crm_", 4) != 0 || key[36] != '_')
        return false;
    for (int i = 0; i < 32; i++)
        if (!isxdigit((unsigned char)hex[i]) || isupper((unsigned char)hex[i]))
            return false;
    for (int i = 37; i < API_KEY_LEN; i++)
        if (!(isalnum((unsigned char)key[i]) || key[i] == '-' || key[i] == '_'))
            return false;
    snprintf(text, sizeof(text), "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
             hex + 20);
    return uuid_canonical(text, key_id);
}

bool api_key_parse(const char *authorization, const char *x_api_key,
                   char key[API_KEY_LEN + 1], char key_id[UUID_TEXT_LEN + 1])
{
    const char *candidate = x_api_key;
    if (authorization != NULL) {
        if (strncasecmp(authorization, "Bearer ", 7) != 0)
            return false;
        candidate = authorization + 7;
        while (*candidate == ' ')
            candidate++;
    }
    if (candidate == NULL || strlen(candidate) != API_KEY_LEN)
        return false;
    memcpy(key, candidate, API_KEY_LEN + 1);
    return key_shape_valid(key, key_id);
}

bool api_key_generate(char key[API_KEY_LEN + 1], char key_id[UUID_TEXT_LEN + 1])
{
    unsigned char secret[32];
    char *b64;
    char id[UUID_TEXT_LEN + 1];
    size_t got = 0;
    while (got < sizeof(secret)) {
        ssize_t n = getrandom(secret + got, sizeof(secret) - got, 0);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    b64 = base64url_encode(secret, sizeof(secret)); /* 43 characters */
    uuid_new(id);
    snprintf(key, API_KEY_LEN + 1, "crm_%.8s%.4s%.4s%.4s%.12s_%s", id, id + 9, id + 14, id + 19,
             id + 24, b64);
    free(b64);
    return key_shape_valid(key, key_id);
}
