// c: checks request signatures, the same way as Weir's Rust, JavaScript and
// Python example plugins.
//
// Config (JSON): {"secret": "...", "consumer": "...", "header": "..."}
//   secret    the gateway secret holding the signing key (required)
//   consumer  who a correctly signed request comes from (required)
//   header    where the signature is (default `x-signature`)
//
// A request is signed with
//   hex(HMAC-SHA256(key, METHOD "\n" PATH-AND-QUERY "\n" BODY))
// in the header. A missing signature is answered with 401 (before the key
// is read), an unreadable key with 500, a wrong signature with 401; a
// correct one sets the `consumer` property and the `x-consumer` header.
//
// Ownership follows wit-bindgen's C bindings: strings and lists a host
// function returns are ours to free; what an export returns must be
// malloc'ed and is freed by the bindings after the call.

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "plugin.h"
#include "sha256.h"

#define DEFAULT_HEADER "x-signature"

struct exports_weir_plugin_filter_handler_t {
    char *secret;   // the secret holding the signing key
    char *consumer; // set as property `consumer` and header `x-consumer`
    char *header;   // the header carrying the signature
};

// The strings in `parts` one after the other, as a new string; aborts
// (traps the call) when out of memory.
static plugin_string_t join(const char *const *parts, size_t count) {
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        total += strlen(parts[i]);
    }
    plugin_string_t out = {malloc(total + 1), total};
    if (out.ptr == NULL) {
        abort();
    }
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        size_t n = strlen(parts[i]);
        memcpy(out.ptr + at, parts[i], n);
        at += n;
    }
    return out;
}

// Log the strings given, joined, at `level`.
#define LOG(level, ...)                                                                                                \
    log_parts((level), (const char *const[]){__VA_ARGS__}, sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *))

static void log_parts(weir_plugin_log_level_t level, const char *const *parts, size_t count) {
    plugin_string_t line = join(parts, count);
    weir_plugin_log_log(level, &line); // lent to the call
    free(line.ptr);
}

static void handler_free(exports_weir_plugin_filter_handler_t *handler) {
    free(handler->secret);
    free(handler->consumer);
    free(handler->header);
    free(handler);
}

bool exports_weir_plugin_filter_static_handler_configure(plugin_string_t *config,
                                                         exports_weir_plugin_filter_own_handler_t *ret,
                                                         plugin_string_t *err) {
    json_field fields[] = {
        {.name = "secret", .required = true},
        {.name = "consumer", .required = true},
        {.name = "header", .required = false},
    };
    size_t count = sizeof fields / sizeof fields[0];
    char *problem = json_parse_fields(config->ptr, config->len, fields, count);
    plugin_string_free(config); // handed to us: ours to free
    if (problem != NULL) {
        // Returned to the bindings, which free it after the call.
        err->ptr = (uint8_t *)problem;
        err->len = strlen(problem);
        return false;
    }
    exports_weir_plugin_filter_handler_t *handler = calloc(1, sizeof *handler);
    char *header = fields[2].value != NULL ? fields[2].value : strdup(DEFAULT_HEADER);
    if (handler == NULL || header == NULL) {
        free(handler);
        free(header);
        free(fields[0].value);
        free(fields[1].value);
        plugin_string_dup(err, "out of memory");
        return false;
    }
    handler->secret = fields[0].value;
    handler->consumer = fields[1].value;
    handler->header = header;
    *ret = exports_weir_plugin_filter_handler_new(handler);
    return true;
}

void exports_weir_plugin_filter_handler_destructor(exports_weir_plugin_filter_handler_t *handler) {
    handler_free(handler);
}

void exports_weir_plugin_filter_method_handler_interests(exports_weir_plugin_filter_borrow_handler_t self,
                                                         exports_weir_plugin_filter_interests_t *ret) {
    (void)self;
    *ret = (exports_weir_plugin_filter_interests_t){
        .on_request = true,
        .request_body = true,
    };
}

// Answer now with `status` and a JSON body. Everything in the reply is
// malloc'ed: the bindings free it after the call.
static void respond_json(exports_weir_plugin_filter_request_action_t *ret, uint16_t status, const char *json) {
    weir_plugin_types_header_t *headers = malloc(sizeof *headers);
    size_t len = strlen(json);
    uint8_t *body = malloc(len);
    if (headers == NULL || body == NULL) {
        abort();
    }
    plugin_string_dup(&headers[0].f0, "content-type");
    plugin_string_dup(&headers[0].f1, "application/json");
    memcpy(body, json, len);
    ret->tag = WEIR_PLUGIN_TYPES_REQUEST_ACTION_RESPOND;
    ret->val.respond = (weir_plugin_types_reply_t){
        .status = status,
        .headers = {headers, 1},
        .body = {body, len},
    };
}

// What went wrong in a host call, for the log.
static const char *error_kind(const weir_plugin_types_error_t *err) {
    switch (err->tag) {
    case WEIR_PLUGIN_TYPES_ERROR_NOT_GRANTED:
        return "not granted: ";
    case WEIR_PLUGIN_TYPES_ERROR_INVALID:
        return "invalid: ";
    default:
        return "failed: ";
    }
}

// The error's message as a new NUL-terminated string (every variant carries one).
static char *error_text(const weir_plugin_types_error_t *err) {
    const plugin_string_t *message = &err->val.failed;
    switch (err->tag) {
    case WEIR_PLUGIN_TYPES_ERROR_NOT_GRANTED:
        message = &err->val.not_granted;
        break;
    case WEIR_PLUGIN_TYPES_ERROR_INVALID:
        message = &err->val.invalid;
        break;
    }
    char *text = malloc(message->len + 1);
    if (text == NULL) {
        abort();
    }
    memcpy(text, message->ptr, message->len);
    text[message->len] = '\0';
    return text;
}

static bool is_space(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Whether the header value (surrounding whitespace ignored, hex digits in
// either case) is `expected`, compared in constant time.
static bool signature_matches(const uint8_t *value, size_t len, const char expected[2 * SHA256_DIGEST_SIZE]) {
    while (len > 0 && is_space(value[0])) {
        value++;
        len--;
    }
    while (len > 0 && is_space(value[len - 1])) {
        len--;
    }
    if (len != 2 * SHA256_DIGEST_SIZE) {
        return false; // the length is no secret
    }
    uint8_t diff = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = value[i];
        uint8_t upper = (uint8_t)((unsigned)(c - 'A') < 26u); // no branch on the data
        diff |= (uint8_t)(c | (upper << 5)) ^ (uint8_t)expected[i];
    }
    return diff == 0;
}

void exports_weir_plugin_filter_method_handler_on_request(exports_weir_plugin_filter_borrow_handler_t self,
                                                          exports_weir_plugin_filter_borrow_request_t request,
                                                          exports_weir_plugin_filter_request_action_t *ret) {
    // The signature.
    plugin_string_t header_name, signature;
    plugin_string_set(&header_name, self->header); // lent to the call
    if (!weir_plugin_types_method_request_header(request, &header_name, &signature)) {
        respond_json(ret, 401, "{\"error\":\"missing signature\"}");
        return;
    }

    // The key.
    plugin_string_t name, key;
    weir_plugin_secrets_error_t secret_err;
    plugin_string_set(&name, self->secret);
    if (!weir_plugin_secrets_get(&name, &key, &secret_err)) {
        char *text = error_text(&secret_err);
        LOG(WEIR_PLUGIN_LOG_LEVEL_ERROR, "secret \"", self->secret, "\": ", error_kind(&secret_err), text);
        free(text);
        weir_plugin_secrets_error_free(&secret_err); // returned to us: ours to free
        plugin_string_free(&signature);
        respond_json(ret, 500, "{\"error\":\"signing key unavailable\"}");
        return;
    }
    hmac_sha256_ctx mac;
    hmac_sha256_init(&mac, key.ptr, key.len);
    secure_wipe(key.ptr, key.len);
    plugin_string_free(&key);

    // The message: method, path and query, body.
    plugin_string_t method, path;
    weir_plugin_types_method_request_method(request, &method);
    weir_plugin_types_method_request_path(request, &path);
    hmac_sha256_update(&mac, method.ptr, method.len);
    hmac_sha256_update(&mac, "\n", 1);
    hmac_sha256_update(&mac, path.ptr, path.len);
    hmac_sha256_update(&mac, "\n", 1);
    plugin_string_free(&method);
    plugin_string_free(&path);
    plugin_list_u8_t body;
    if (weir_plugin_types_method_request_body(request, &body)) {
        hmac_sha256_update(&mac, body.ptr, body.len);
        plugin_list_u8_free(&body);
    }
    uint8_t digest[SHA256_DIGEST_SIZE];
    hmac_sha256_final(&mac, digest);
    static const char hex[] = "0123456789abcdef";
    char expected[2 * SHA256_DIGEST_SIZE];
    for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++) {
        expected[2 * i] = hex[digest[i] >> 4];
        expected[2 * i + 1] = hex[digest[i] & 0x0f];
    }
    bool valid = signature_matches(signature.ptr, signature.len, expected);
    plugin_string_free(&signature);
    secure_wipe(digest, sizeof digest);
    secure_wipe(expected, sizeof expected);
    if (!valid) {
        respond_json(ret, 401, "{\"error\":\"invalid signature\"}");
        return;
    }

    // Signed by the consumer.
    plugin_string_t property, consumer, x_consumer;
    plugin_string_set(&property, "consumer");
    plugin_string_set(&consumer, self->consumer);
    plugin_string_set(&x_consumer, "x-consumer");
    weir_plugin_types_method_request_set_property(request, &property, &consumer);
    weir_plugin_types_error_t err;
    if (!weir_plugin_types_method_request_set_header(request, &x_consumer, &consumer, &err)) {
        char *text = error_text(&err);
        LOG(WEIR_PLUGIN_LOG_LEVEL_WARN, "could not set x-consumer: ", error_kind(&err), text);
        free(text);
        weir_plugin_types_error_free(&err);
    }
    ret->tag = WEIR_PLUGIN_TYPES_REQUEST_ACTION_CONTINUE;
}

void exports_weir_plugin_filter_method_handler_on_response(exports_weir_plugin_filter_borrow_handler_t self,
                                                           exports_weir_plugin_filter_borrow_response_t response) {
    (void)self;
    (void)response;
}

// Not called (no chunks asked for); passes the chunk through.
void exports_weir_plugin_filter_method_handler_on_response_chunk(exports_weir_plugin_filter_borrow_handler_t self,
                                                                 plugin_list_u8_t *chunk, bool end,
                                                                 plugin_list_u8_t *ret) {
    (void)self;
    (void)end;
    *ret = *chunk;
}
