/* examples/hello (the smallest WAGI handler) as a wasi:http/proxy@0.2.0 component.
 *
 * Same answer: 200, Content-Type: text/plain, "Hello, world!\n". No libc:
 * Debian's wasi-libc targets preview 1 only and no wit-bindgen C generator
 * ships on PyPI, npm or Debian, so this file calls the canonical-ABI imports
 * of wasi:http/types and wasi:io/streams itself (core signatures as
 * `wasm-tools component embed --dummy` prints them). build.sh wraps the core
 * module with `wasm-tools component embed` + `component new`.
 */

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long usize;

#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))
#define HTTP "wasi:http/types@0.2.0"

IMPORT(HTTP, "[constructor]fields") u32 fields_new(void);
IMPORT(HTTP, "[method]fields.append")
void fields_append(u32 self, const char *name, usize name_len, const char *value, usize value_len, u8 *ret);
IMPORT(HTTP, "[constructor]outgoing-response") u32 outgoing_response_new(u32 headers);
IMPORT(HTTP, "[method]outgoing-response.body") void outgoing_response_body(u32 self, u32 *ret);
IMPORT(HTTP, "[method]outgoing-body.write") void outgoing_body_write(u32 self, u32 *ret);
IMPORT(HTTP, "[static]outgoing-body.finish") void outgoing_body_finish(u32 body, u32 has_trailers, u32 trailers, u8 *ret);
/* set(param, result<own<outgoing-response>, error-code>): the result flattens to
 * a tag, then error-code's joined payload slots; ok puts the handle in the first. */
IMPORT(HTTP, "[static]response-outparam.set")
void response_outparam_set(u32 param, u32 is_err, u32 response, u32 a, u64 b, u32 c, u32 d, u32 e, u32 f);
IMPORT(HTTP, "[resource-drop]incoming-request") void drop_incoming_request(u32 self);
IMPORT("wasi:io/streams@0.2.0", "[method]output-stream.blocking-write-and-flush")
void blocking_write_and_flush(u32 self, const char *ptr, usize len, u8 *ret);
IMPORT("wasi:io/streams@0.2.0", "[resource-drop]output-stream") void drop_output_stream(u32 self);

/* Nothing here returns a list or string to the guest, so the host never calls
 * this; the canonical ABI still wants one exported. */
EXPORT("cabi_realloc") void *cabi_realloc(void *old, usize old_size, usize align, usize new_size) {
    (void)old, (void)old_size, (void)align, (void)new_size;
    __builtin_trap();
}

static const char type_name[] = "content-type";
static const char type_value[] = "text/plain";
static const char body_text[] = "Hello, world!\n";

EXPORT("wasi:http/incoming-handler@0.2.0#handle") void handle(u32 request, u32 outparam) {
    u8 status[16] __attribute__((aligned(8)));
    u32 ret[2];

    drop_incoming_request(request);
    u32 headers = fields_new();
    fields_append(headers, type_name, sizeof type_name - 1, type_value, sizeof type_value - 1, status);
    if (status[0] != 0)
        __builtin_trap();
    u32 response = outgoing_response_new(headers);
    outgoing_response_body(response, ret);
    if (ret[0] != 0)
        __builtin_trap();
    u32 body = ret[1];
    response_outparam_set(outparam, 0, response, 0, 0, 0, 0, 0, 0);

    outgoing_body_write(body, ret);
    if (ret[0] != 0)
        __builtin_trap();
    u32 stream = ret[1];
    blocking_write_and_flush(stream, body_text, sizeof body_text - 1, status);
    if (status[0] != 0)
        __builtin_trap(); /* the client went away: nothing sensible left to do */
    drop_output_stream(stream);
    outgoing_body_finish(body, 0, 0, status);
}
