/*
 * auth: key format and role names. Keys carry their id so
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
