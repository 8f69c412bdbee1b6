/*
 * libFuzzer harness: request bodies. Arbitrary bytes go through the same
 * steps as in http.c (UTF-8 check, JSON parse) and then every body
 * validator (resolve, traits, interaction, batch envelope and items).
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "textutil.h"
#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body, *errors, *items = NULL, *item;
    struct resolve_request rr;
    struct traits_request tr;
    struct interaction_request ir;
    size_t i;

    if (!utf8_valid((const char *)data, size))
        return 0;
    body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        return 0;
    }
    errors = json_array();
    validate_resolve(body, &rr, errors);
    validate_traits_request(body, &tr, errors);
    validate_interaction(body, "", &ir, errors);
    interaction_request_clear(&ir);
    if (validate_batch_envelope(body, &items, errors)) {
        json_array_foreach(items, i, item) {
            validate_interaction(item, "/items/0", &ir, errors);
            interaction_request_clear(&ir);
        }
    }
    json_decref(errors);
    json_decref(body);
    return 0;
}
