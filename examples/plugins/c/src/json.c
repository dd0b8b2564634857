// A strict reader for a JSON object of strings (RFC 8259 syntax).
#include "json.h"

#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const uint8_t *s;
    size_t len;
    size_t pos;
} parser;

// Concatenate up to four strings (NULLs are skipped) into a new string.
// Never NULL: running out of memory aborts (traps the call).
static char *concat(const char *a, const char *b, const char *c, const char *d) {
    const char *parts[4] = {a, b, c, d};
    size_t total = 1;
    for (int i = 0; i < 4; i++) {
        if (parts[i] != NULL) {
            total += strlen(parts[i]);
        }
    }
    char *out = malloc(total);
    if (out == NULL) {
        abort(); // out of memory: a NULL here would read as success
    }
    char *end = out;
    for (int i = 0; i < 4; i++) {
        if (parts[i] != NULL) {
            size_t n = strlen(parts[i]);
            memcpy(end, parts[i], n);
            end += n;
        }
    }
    *end = '\0';
    return out;
}

// "config is not valid JSON: WHAT at byte N".
static char *syntax_error(const parser *p, const char *what) {
    char digits[24];
    size_t n = p->pos, i = sizeof digits - 1;
    digits[i] = '\0';
    do {
        digits[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    return concat("config is not valid JSON: ", what, " at byte ", digits + i);
}

static void skip_whitespace(parser *p) {
    while (p->pos < p->len) {
        uint8_t c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            break;
        }
        p->pos++;
    }
}

static int hex_value(uint8_t c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// Four hex digits after `\u`; -1 if they are not.
static long read_hex4(parser *p) {
    if (p->len - p->pos < 4) {
        return -1;
    }
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p->s[p->pos + i]);
        if (h < 0) {
            return -1;
        }
        v = v * 16 + h;
    }
    p->pos += 4;
    return v;
}

static size_t put_utf8(char *out, unsigned long cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// A string at `p->pos` (which holds `"`), decoded into a new NUL-terminated
// string in `*out`. Returns NULL or an error message.
static char *read_string(parser *p, char **out) {
    *out = NULL;
    p->pos++; // the opening quote
    // Decoding never makes a string longer than its JSON form.
    char *buf = malloc(p->len - p->pos + 1);
    if (buf == NULL) {
        return concat("out of memory", NULL, NULL, NULL);
    }
    size_t n = 0;
    char *err = NULL;
    for (;;) {
        if (p->pos >= p->len) {
            err = syntax_error(p, "unterminated string");
            break;
        }
        uint8_t c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            buf[n] = '\0';
            *out = buf;
            return NULL;
        }
        if (c < 0x20) {
            err = syntax_error(p, "control character in a string");
            break;
        }
        if (c != '\\') {
            buf[n++] = (char)c; // the input is UTF-8 already
            p->pos++;
            continue;
        }
        size_t escape_at = p->pos;
        p->pos++;
        if (p->pos >= p->len) {
            err = syntax_error(p, "unterminated string");
            break;
        }
        uint8_t e = p->s[p->pos++];
        switch (e) {
        case '"':
        case '\\':
        case '/':
            buf[n++] = (char)e;
            continue;
        case 'b':
            buf[n++] = '\b';
            continue;
        case 'f':
            buf[n++] = '\f';
            continue;
        case 'n':
            buf[n++] = '\n';
            continue;
        case 'r':
            buf[n++] = '\r';
            continue;
        case 't':
            buf[n++] = '\t';
            continue;
        case 'u':
            break;
        default:
            p->pos = escape_at;
            err = syntax_error(p, "invalid escape");
            goto fail;
        }
        long cp = read_hex4(p);
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            // A high surrogate must be followed by `\u` and a low one.
            long low = -1;
            if (p->len - p->pos >= 2 && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u') {
                p->pos += 2;
                low = read_hex4(p);
            }
            if (low < 0xDC00 || low > 0xDFFF) {
                cp = -1;
            } else {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            cp = -1;
        }
        if (cp < 0) {
            p->pos = escape_at;
            err = syntax_error(p, "invalid \\u escape");
            break;
        }
        if (cp == 0) {
            p->pos = escape_at;
            err = syntax_error(p, "NUL (\\u0000) in a string");
            break;
        }
        n += put_utf8(buf + n, (unsigned long)cp);
    }
fail:
    free(buf);
    return err;
}

void json_fields_free(json_field *fields, size_t count) {
    for (size_t i = 0; i < count; i++) {
        free(fields[i].value);
        fields[i].value = NULL;
    }
}

// "unknown field `KEY`, expected one of `A`, `B`, `C`".
static char *unknown_field(const char *key, const json_field *fields, size_t count) {
    char *msg = concat("unknown field `", key, "`, expected ", count == 1 ? "" : "one of ");
    for (size_t i = 0; i < count; i++) {
        char *longer = concat(msg, i == 0 ? "`" : ", `", fields[i].name, "`");
        free(msg);
        msg = longer;
    }
    return msg;
}

char *json_parse_fields(const uint8_t *json, size_t len, json_field *fields, size_t count) {
    parser p = {json, len, 0};
    char *err = NULL;
    char *key = NULL;
    for (size_t i = 0; i < count; i++) {
        fields[i].value = NULL;
    }

    skip_whitespace(&p);
    if (p.pos >= p.len || p.s[p.pos] != '{') {
        err = concat("config must be a JSON object", NULL, NULL, NULL);
        goto done;
    }
    p.pos++;
    skip_whitespace(&p);
    if (p.pos < p.len && p.s[p.pos] == '}') {
        p.pos++;
    } else {
        for (;;) {
            skip_whitespace(&p);
            if (p.pos >= p.len || p.s[p.pos] != '"') {
                err = syntax_error(&p, "expected a key (a string)");
                goto done;
            }
            if ((err = read_string(&p, &key)) != NULL) {
                goto done;
            }
            json_field *field = NULL;
            for (size_t i = 0; i < count; i++) {
                if (strcmp(fields[i].name, key) == 0) {
                    field = &fields[i];
                }
            }
            if (field == NULL) {
                err = unknown_field(key, fields, count);
                goto done;
            }
            if (field->value != NULL) {
                err = concat("duplicate field `", key, "`", NULL);
                goto done;
            }
            skip_whitespace(&p);
            if (p.pos >= p.len || p.s[p.pos] != ':') {
                err = syntax_error(&p, "expected `:`");
                goto done;
            }
            p.pos++;
            skip_whitespace(&p);
            if (p.pos >= p.len || p.s[p.pos] != '"') {
                err = concat("invalid type for field `", key, "`: expected a string", NULL);
                goto done;
            }
            if ((err = read_string(&p, &field->value)) != NULL) {
                goto done;
            }
            free(key);
            key = NULL;
            skip_whitespace(&p);
            if (p.pos < p.len && p.s[p.pos] == ',') {
                p.pos++;
                continue;
            }
            if (p.pos < p.len && p.s[p.pos] == '}') {
                p.pos++;
                break;
            }
            err = syntax_error(&p, "expected `,` or `}`");
            goto done;
        }
    }
    skip_whitespace(&p);
    if (p.pos != p.len) {
        err = syntax_error(&p, "trailing characters");
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        if (fields[i].required && fields[i].value == NULL) {
            err = concat("missing field `", fields[i].name, "`", NULL);
            goto done;
        }
    }

done:
    free(key);
    if (err != NULL) {
        json_fields_free(fields, count);
    }
    return err;
}
