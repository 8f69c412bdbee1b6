/*
 * libFuzzer harness: the segment rule compiler. Any JSON value is compiled;
 * on success the SQL must not contain a quote (every value is a parameter).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *rule = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL), *errors;
    struct segment_sql out;
    if (rule == NULL)
        return 0;
    errors = json_array();
    if (segment_compile(rule, "/rule", &out, errors)) {
        /* Literal quotes only come from the fixed SQL fragments ('first_name', '{}'...);
         * user text never reaches it: a value with a marker must not appear. */
        if (strstr(out.where, "FUZZMARK") != NULL)
            abort();
        /* The stored form (live membership): every '$' is a "$1[" of the
         * one text[] parameter, and still no user text. */
        char *stored = segment_stored_condition(out.where);
        if (strstr(stored, "FUZZMARK") != NULL)
            abort();
        for (const char *p = stored; (p = strchr(p, '$')) != NULL; p++)
            if (strncmp(p, "$1[", 3) != 0)
                abort();
        free(stored);
        segment_sql_free(&out);
    }
    json_decref(errors);
    json_decref(rule);
    return 0;
}
