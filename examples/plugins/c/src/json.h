// A small, strict JSON reader for one thing: an object whose values are all
// strings, with a fixed set of known keys (the plugin's config).
#ifndef SIGNATURE_JSON_H
#define SIGNATURE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct json_field {
    const char *name; // the key
    bool required;    // a missing required key is an error
    char *value;      // out: the decoded value (malloc'ed, NUL-terminated), or NULL if absent
} json_field;

// Parse `json` (`len` bytes of UTF-8) as one JSON object whose keys are all
// among `fields` and whose values are all strings, and fill in the fields'
// values. Returns NULL on success. Otherwise returns a malloc'ed,
// NUL-terminated message naming the problem (an unknown, missing, duplicate
// or non-string field, or where the JSON is malformed), and every value is
// NULL. A value may not contain NUL (`\u0000`).
char *json_parse_fields(const uint8_t *json, size_t len, json_field *fields, size_t count);

// Free the fields' values and set them to NULL.
void json_fields_free(json_field *fields, size_t count);

#endif
