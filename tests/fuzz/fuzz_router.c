/*
 * libFuzzer harness: routing. The input is "METHOD path"; route_request
 * must classify any bytes without reading out of bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    char *space;
    struct route_match m;
    memcpy(text, data, size);
    text[size] = '\0';
    space = strchr(text, ' ');
    if (space != NULL) {
        *space = '\0';
        route_request(text, space + 1, &m);
    } else {
        route_request("GET", text, &m);
    }
    free(text);
    return 0;
}
