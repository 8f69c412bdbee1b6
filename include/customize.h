/*
 * customize: the request rules of the "customize" routes. Owns the shape of
 * preferences (ranked channels, language tag, frequency cap, quiet hours,
 * categories, delivery, free-form keys) and of their JSON merge patches,
 * consent purposes, statuses and channels, moment kinds, and the small
 * parsers behind them (BCP 47-style language tags, "HH:MM" times of day,
 * IANA time zone name shape). Whether a time zone exists is the database's
 * call. Pure: no I/O.
 */
#ifndef CRM_CUSTOMIZE_H
#define CRM_CUSTOMIZE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define LANGUAGE_TAG_MAX 35
#define TIME_ZONE_MAX 64
#define PREF_CATEGORIES_MAX 100
#define PREF_CATEGORY_LEN 100
#define PREF_KEY_LEN 64
#define FREQUENCY_MAX_MESSAGES 1000
#define FREQUENCY_MAX_DAYS 365

/*
 * Check a language tag of the form language[-Script][-REGION][-variant...]
 * (language 2-3 letters, script 4 letters, region 2 letters or 3 digits,
 * variants 5-8 alphanumerics or a digit and 3 alphanumerics) and write it
 * with the canonical case ("fr-ca" -> "fr-CA", "ZH-HANT-tw" -> "zh-Hant-TW")
 * to out (cap >= LANGUAGE_TAG_MAX + 1).
 */
bool language_tag_normalize(const char *in, char *out, size_t cap);

/* "HH:MM" with HH 00-23 and MM 00-59; *minutes since midnight. */
bool time_of_day_parse(const char *text, int *minutes);

/* The shape of an IANA zone name ("Europe/Paris", "America/Port-au-Prince",
 * "Etc/GMT+5", "UTC"): 1..TIME_ZONE_MAX of A-Z a-z 0-9 / _ + -, no empty
 * path segment. */
bool time_zone_name_plausible(const char *name);

bool consent_purpose_valid(const char *name);
/* A channel of the interaction channel list, or "any". */
bool consent_channel_valid(const char *name);
bool consent_status_valid(const char *name);
bool moment_kind_valid(const char *name);
const char *consent_purpose_list(void);
/* "birthday, anniversary, warranty" */
const char *moment_kind_list(void);
/* "granted, withdrawn" */
const char *consent_status_list(void);

/* Moment kinds declared from date traits (GET/PUT /v1/settings/moments). */
#define MOMENT_KIND_MAX 64
#define MOMENT_KINDS_DECLARED_MAX 50

/* A kind name for GET /v1/moments: a built-in kind or the shape of a
 * declared one (a lower-case letter, then a-z 0-9 _, 1..MOMENT_KIND_MAX). */
bool moment_kind_name_plausible(const char *name);

/*
 * PUT /v1/settings/moments body: {"kinds": [{kind, trait, purpose,
 * lead_days}]}, at most MOMENT_KINDS_DECLARED_MAX. A built-in kind takes no
 * trait; any other kind needs a plausible name and a trait
 * "attributes.<key>"; no kind and no trait twice; purpose a consent purpose;
 * lead_days 0..366. Errors carry pointers (/kinds/2/trait).
 */
bool validate_moment_settings(json_t *body, json_t *errors);

/*
 * PATCH /v1/customers/{id}/preferences body: {source, preferences}, where
 * preferences is a JSON merge patch (RFC 7396) of the preferences document.
 * On success *patch is a new reference to a normalised copy of the patch
 * (language tag in canonical case) and *source borrows from body.
 */
bool validate_preferences_request(json_t *body, json_t **patch, const char **source,
                                  json_t *errors);

struct consent_request {
    const char *purpose, *channel, *status, *source;
    const char *occurred_at; /* NULL when absent */
};

/* POST /v1/customers/{id}/consents body; strings borrow from body. */
bool validate_consent_request(json_t *body, struct consent_request *out, json_t *errors);

#endif
