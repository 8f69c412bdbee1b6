/*
 * textutil: small pure helpers for text that arrives from the network:
 * UTF-8 validation, canonical UUID parsing and generation, RFC 3339
 * timestamp and calendar-date checks, and base64url for opaque cursors.
 * Nothing here allocates except where the name says so.
 */
#ifndef CRM_TEXTUTIL_H
#define CRM_TEXTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UUID_TEXT_LEN 36

/* True when buf[0..len) is well-formed UTF-8 (no overlongs, no surrogates, no NUL). */
bool utf8_valid(const char *buf, size_t len);

/* Number of code points in a valid UTF-8 string. */
size_t utf8_length(const char *s);

/* Shorten a NUL-terminated string until it is valid UTF-8 (drops a
 * multi-byte sequence cut short by truncation). */
void utf8_truncate(char *s);

/* An enumeration's names joined as "a, b, c" for error messages, built once
 * from the array that defines them (so a message never lists a stale set).
 * names is NULL-terminated. Thread-safe; the text lives as long as the
 * struct. Declare one per array:
 *   static struct name_list channel_names = {.names = CHANNELS};  */
struct name_list {
    const char *const *names;
    int ready; /* 0 until text is built (read with acquire ordering) */
    char text[512];
};
const char *name_list_text(struct name_list *l);

/* Parse a UUID in 8-4-4-4-12 hex form (any case); writes the lower-case
 * canonical text (37 bytes with NUL) to out. */
bool uuid_canonical(const char *text, char out[UUID_TEXT_LEN + 1]);

/* A new random (version 4) UUID as lower-case text. */
void uuid_new(char out[UUID_TEXT_LEN + 1]);

/* A new time-ordered (version 7, RFC 9562) UUID as lower-case text: 48 bits
 * of Unix time in milliseconds (never going back within a thread), then 74
 * random bits. For row keys written in time order (interactions), whose
 * B-tree inserts then land on the right-hand edge of the index instead of a
 * random page; not for ids that must not reveal when they were made
 * (customers keep version 4). */
void uuid_new_v7(char out[UUID_TEXT_LEN + 1]);

/* The version 7 UUID of Unix time ms (low 48 bits) and 10 random bytes (74
 * bits used); the pure part of uuid_new_v7. */
void uuid_v7_make(uint64_t ms, const unsigned char random[10], char out[UUID_TEXT_LEN + 1]);

/* 64-bit FNV-1a of a NUL-terminated string, for hash tables keyed by text
 * (API keys and key ids); not for anything an attacker must not predict. */
uint64_t text_hash(const char *s);

/* True for YYYY-MM-DD naming a real calendar date with year in [min_year, max_year]. */
bool date_valid(const char *text, int min_year, int max_year);

/* True for an RFC 3339 date-time with 'T' (or 't'/space), optional fraction
 * (1..9 digits) and a mandatory offset ('Z' or +hh:mm), year 1900..2999. */
bool rfc3339_valid(const char *text);

/* True for a PostgreSQL LSN as printed by PostgreSQL: 1..8 hex digits, '/',
 * 1..8 hex digits. */
bool pg_lsn_valid(const char *text);

/* base64url without padding. Encode returns a malloc'd string. Decode writes
 * at most outcap-1 bytes plus NUL and returns the decoded length, or -1. */
char *base64url_encode(const unsigned char *data, size_t len);
long base64url_decode(const char *text, unsigned char *out, size_t outcap);

#endif
