// PLUGIN_NAME: a Weir plugin in C. It adds `x-PLUGIN_NAME: on` to every
// request and takes no config.
//
// `weir plugin build` generates `plugin.h`/`plugin.c` (the bindings) from
// wit/plugin.wit into build/bindings/; read build/bindings/plugin.h for
// every type and host function.
//
// Ownership, in short: what the host hands to an export (`config`, `chunk`)
// is yours to free; what an export returns (error strings, replies, chunks)
// must come from malloc, and the bindings free it after the call; what a
// host function returns is yours to free; what you pass to a host function
// stays yours.

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

// The handler resource: one per route that uses this plugin. Keep the
// route's settings here.
struct exports_weir_plugin_filter_handler_t {
    int unused;
};

// Whether `config` is `{}` (what the gateway sends when the route gives
// none), allowing whitespace.
static bool is_empty_object(const plugin_string_t *config) {
    const char *want = "{}";
    for (size_t i = 0; i < config->len; i++) {
        char c = (char)config->ptr[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            continue;
        }
        if (*want == '\0' || c != *want) {
            return false;
        }
        want++;
    }
    return *want == '\0';
}

// `configure`: parse the route's config (JSON). Return true with a new
// handle in `ret`, or false with a malloc'ed message in `err`.
bool exports_weir_plugin_filter_static_handler_configure(plugin_string_t *config,
                                                         exports_weir_plugin_filter_own_handler_t *ret,
                                                         plugin_string_t *err) {
    bool ok = is_empty_object(config);
    plugin_string_free(config); // ours to free
    if (!ok) {
        plugin_string_dup(err, "PLUGIN_NAME takes no config");
        return false;
    }
    exports_weir_plugin_filter_handler_t *handler = calloc(1, sizeof *handler);
    if (handler == NULL) {
        plugin_string_dup(err, "out of memory");
        return false;
    }
    *ret = exports_weir_plugin_filter_handler_new(handler);
    return true;
}

// Called when the gateway drops the handler (the route or plugin is gone).
void exports_weir_plugin_filter_handler_destructor(exports_weir_plugin_filter_handler_t *handler) {
    free(handler);
}

// Which phases to call: only the request phase, no bodies.
void exports_weir_plugin_filter_method_handler_interests(exports_weir_plugin_filter_borrow_handler_t self,
                                                         exports_weir_plugin_filter_interests_t *ret) {
    (void)self;
    *ret = (exports_weir_plugin_filter_interests_t){.on_request = true};
}

// The request phase: add the header and pass the request on.
void exports_weir_plugin_filter_method_handler_on_request(exports_weir_plugin_filter_borrow_handler_t self,
                                                          exports_weir_plugin_filter_borrow_request_t request,
                                                          exports_weir_plugin_filter_request_action_t *ret) {
    (void)self;
    plugin_string_t name, value;
    plugin_string_set(&name, "x-PLUGIN_NAME"); // borrowed by the call, not copied
    plugin_string_set(&value, "on");
    weir_plugin_types_error_t err;
    if (!weir_plugin_types_method_request_set_header(request, &name, &value, &err)) {
        // Every error variant carries a message; the union members overlap.
        weir_plugin_log_log(WEIR_PLUGIN_LOG_LEVEL_WARN, &err.val.invalid);
        weir_plugin_types_error_free(&err); // returned to us: ours to free
    }
    ret->tag = WEIR_PLUGIN_TYPES_REQUEST_ACTION_CONTINUE;
}

// Not called: `interests` did not ask for it.
void exports_weir_plugin_filter_method_handler_on_response(exports_weir_plugin_filter_borrow_handler_t self,
                                                           exports_weir_plugin_filter_borrow_response_t response) {
    (void)self;
    (void)response;
}

// Not called: `interests` did not ask for chunks. Passes the chunk through
// (its ownership goes back to the bindings, which free it).
void exports_weir_plugin_filter_method_handler_on_response_chunk(exports_weir_plugin_filter_borrow_handler_t self,
                                                                 plugin_list_u8_t *chunk, bool end,
                                                                 plugin_list_u8_t *ret) {
    (void)self;
    (void)end;
    *ret = *chunk;
}
