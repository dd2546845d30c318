/* A wasi:http/proxy test guest that reads its request body as it arrives (no libc).
 *
 * Freestanding C against WASI 0.2.0 through the canonical ABI, built as
 * proxy_guest.c is (build.sh: `component embed` + `component new`, world
 * `proxy-guest` in proxy-wit/). Used by tests/guest/proxy/test_proxy_upload.py
 * and bench/proxy_upload.py. The path picks what it does:
 *
 *   /echo       sets the outparam first, then echoes each chunk as it reads it:
 *               input-stream.read (non-blocking) and, when it returns nothing yet,
 *               wasi:io/poll.poll on the stream's pollable
 *   /blocking   the same with input-stream.blocking-read
 *   /count      reads the whole body with blocking-read, then answers
 *               "N bytes, closed" or "N bytes, error: <to-debug-string>"
 *   /skip       blocking-skip to the end, then "skipped N"
 *   /ignore     answers "ignored\n" without touching the body
 *   /trailers   reads the body, finishes it (incoming-body.finish) and reports what
 *               future-trailers.get says ("N bytes, trailers=none"); answers with a
 *               trailers field passed to outgoing-body.finish
 *
 * A body that fails mid-read (last-operation-failed) is also reported on stdout,
 * which the host logs: "body error after N bytes: <to-debug-string>".
 */

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long usize;

#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))
#define HTTP "wasi:http/types@0.2.0"
#define IO "wasi:io/streams@0.2.0"

IMPORT(HTTP, "[constructor]fields") u32 fields_new(void);
IMPORT(HTTP, "[method]fields.append") void fields_append(u32, const char *, usize, const u8 *, usize, u8 *ret);
IMPORT(HTTP, "[method]incoming-request.path-with-query") void request_path(u32, u32 *ret);
IMPORT(HTTP, "[method]incoming-request.consume") void request_consume(u32, u32 *ret);
IMPORT(HTTP, "[resource-drop]incoming-request") void request_drop(u32);
IMPORT(HTTP, "[method]incoming-body.stream") void incoming_body_stream(u32, u32 *ret);
IMPORT(HTTP, "[static]incoming-body.finish") u32 incoming_body_finish(u32);
IMPORT(HTTP, "[method]future-trailers.subscribe") u32 trailers_subscribe(u32);
IMPORT(HTTP, "[method]future-trailers.get") void trailers_get(u32, u8 *ret);
IMPORT(HTTP, "[resource-drop]future-trailers") void trailers_drop(u32);
IMPORT(HTTP, "[constructor]outgoing-response") u32 response_new(u32 headers);
IMPORT(HTTP, "[method]outgoing-response.set-status-code") u32 response_set_status(u32, u32);
IMPORT(HTTP, "[method]outgoing-response.body") void response_body(u32, u32 *ret);
IMPORT(HTTP, "[method]outgoing-body.write") void body_write(u32, u32 *ret);
IMPORT(HTTP, "[static]outgoing-body.finish") void body_finish(u32, u32, u32, u8 *ret);
IMPORT(HTTP, "[static]response-outparam.set")
void outparam_set(u32, u32, u32, u32, u64, u32, u32, u32, u32);
IMPORT(IO, "[method]input-stream.read") void stream_read(u32, u64, u32 *ret);
IMPORT(IO, "[method]input-stream.blocking-read") void blocking_read(u32, u64, u32 *ret);
IMPORT(IO, "[method]input-stream.blocking-skip") void blocking_skip(u32, u64, u64 *ret);
IMPORT(IO, "[method]input-stream.subscribe") u32 input_subscribe(u32);
IMPORT(IO, "[resource-drop]input-stream") void input_drop(u32);
IMPORT(IO, "[method]output-stream.check-write") void check_write(u32, u64 *ret);
IMPORT(IO, "[method]output-stream.write") void stream_write(u32, const u8 *, usize, u8 *ret);
IMPORT(IO, "[method]output-stream.blocking-flush") void blocking_flush(u32, u8 *ret);
IMPORT(IO, "[method]output-stream.blocking-write-and-flush") void write_and_flush(u32, const u8 *, usize, u8 *ret);
IMPORT(IO, "[resource-drop]output-stream") void output_drop(u32);
IMPORT("wasi:io/error@0.2.0", "[method]error.to-debug-string") void error_string(u32, u32 *ret);
IMPORT("wasi:io/error@0.2.0", "[resource-drop]error") void error_drop(u32);
IMPORT("wasi:io/poll@0.2.0", "poll") void poll(const u32 *, usize, u32 *ret);
IMPORT("wasi:io/poll@0.2.0", "[method]pollable.block") void pollable_block(u32);
IMPORT("wasi:io/poll@0.2.0", "[resource-drop]pollable") void pollable_drop(u32);
IMPORT("wasi:cli/stdout@0.2.0", "get-stdout") u32 get_stdout(void);

extern u8 __heap_base;
static usize heap_top = 0;
static usize heap_end = 0;

static void *alloc(usize size, usize align) {
    if (heap_top == 0) {
        heap_top = (usize)&__heap_base;
        heap_end = __builtin_wasm_memory_size(0) * 65536;
    }
    usize at = (heap_top + align - 1) & ~(align - 1);
    while (at + size > heap_end) {
        if (__builtin_wasm_memory_grow(0, 1) == (usize)-1)
            __builtin_trap();
        heap_end += 65536;
    }
    heap_top = at + size;
    return (void *)at;
}

void *memcpy(void *dst, const void *src, usize n) {
    u8 *d = dst;
    const u8 *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

EXPORT("cabi_realloc") void *cabi_realloc(void *old, usize old_size, usize align, usize new_size) {
    void *p = alloc(new_size, align);
    if (old)
        memcpy(p, old, old_size < new_size ? old_size : new_size);
    return p;
}

static usize slen(const char *s) {
    usize n = 0;
    while (s[n])
        n++;
    return n;
}

static char *utoa(u64 value, char *end) {
    *--end = 0;
    do {
        *--end = '0' + value % 10;
        value /= 10;
    } while (value);
    return end;
}

static int starts(const char *s, usize len, const char *prefix) {
    usize n = slen(prefix);
    if (len < n)
        return 0;
    for (usize i = 0; i < n; i++)
        if (s[i] != prefix[i])
            return 0;
    return len == n || s[n] == '?';
}

/* A line of text built up piece by piece. */
struct line {
    char text[400];
    usize len;
};

static void add(struct line *l, const char *s, usize n) {
    for (usize i = 0; i < n && l->len < sizeof l->text - 1; i++)
        l->text[l->len++] = s[i];
    l->text[l->len] = 0;
}

static void adds(struct line *l, const char *s) {
    add(l, s, slen(s));
}

static void addu(struct line *l, u64 v) {
    char num[24];
    adds(l, utoa(v, num + sizeof num));
}

/* Set the outparam to a new response (200); returns the body, its output stream in *out. */
static u32 respond(u32 outparam, u32 *out) {
    u32 response = response_new(fields_new());
    response_set_status(response, 200);
    u32 ret[2];
    response_body(response, ret);
    u32 body = ret[1];
    outparam_set(outparam, 0, response, 0, 0, 0, 0, 0, 0);
    body_write(body, ret);
    *out = ret[1];
    return body;
}

static void finish(u32 body, u32 stream, u32 trailers) {
    u8 ret[40];
    output_drop(stream);
    body_finish(body, trailers != 0, trailers, ret);
}

/* Write `len` bytes with check-write + write + flush. */
static void write_all(u32 stream, const u8 *data, usize len) {
    u64 permit[2];
    u8 ret[12];
    while (len) {
        check_write(stream, permit);
        usize n = permit[1] < len ? permit[1] : len;
        stream_write(stream, data, n, ret);
        if (ret[0])
            __builtin_trap();
        data += n;
        len -= n;
    }
    blocking_flush(stream, ret);
}

static void put(u32 stream, const char *text) {
    write_all(stream, (const u8 *)text, slen(text));
}

/* The body's input stream; the incoming-body in *body. */
static u32 body_stream(u32 request, u32 *body) {
    u32 ret[3];
    request_consume(request, ret);
    *body = ret[1];
    incoming_body_stream(*body, ret);
    return ret[1];
}

/* After a read or skip failed: the error's text added to `l` (and the error dropped); nothing if closed. */
static void add_failure(struct line *l, u8 tag, u32 error) {
    if (tag != 0) {
        adds(l, "closed");
        return;
    }
    u32 ret[2];
    error_string(error, ret);
    adds(l, "error: ");
    add(l, (const char *)ret[0], ret[1]);
    error_drop(error);
}

static void log_failure(u64 got, u8 tag, u32 error) {
    if (tag != 0)
        return; /* closed: the end of the body */
    struct line l = {.len = 0};
    adds(&l, "body error after ");
    addu(&l, got);
    adds(&l, " bytes: ");
    add_failure(&l, tag, error);
    adds(&l, "\n");
    u32 out = get_stdout();
    u8 ret[12];
    write_and_flush(out, (const u8 *)l.text, l.len, ret);
    output_drop(out);
}

/* Echo each chunk as it is read (blocking-read, or read + poll). */
static void echo(u32 request, u32 outparam, int blocking) {
    u32 in_body, out, ret[3];
    u32 in = body_stream(request, &in_body);
    u32 out_body = respond(outparam, &out);
    u32 ready = input_subscribe(in);
    u64 got = 0;
    for (;;) {
        usize mark = heap_top;
        if (blocking)
            blocking_read(in, 1 << 16, ret);
        else
            stream_read(in, 1 << 16, ret);
        if (((u8 *)ret)[0]) {
            log_failure(got, ((u8 *)ret)[4], ret[2]);
            break;
        }
        if (ret[2] == 0) {
            u32 ready_list[3];
            poll(&ready, 1, ready_list); /* returns once the stream has data, its end or an error */
        } else {
            write_all(out, (const u8 *)ret[1], ret[2]);
            got += ret[2];
        }
        heap_top = mark; /* the chunk went out: give its space back */
    }
    pollable_drop(ready);
    input_drop(in);
    finish(out_body, out, 0);
}

static void count(u32 request, u32 outparam, int skip) {
    u32 in_body, out, ret[3];
    u64 sret[3];
    u32 in = body_stream(request, &in_body);
    u64 got = 0;
    struct line l = {.len = 0};
    for (;;) {
        usize mark = heap_top;
        u8 tag, kind;
        u32 error;
        if (skip) {
            blocking_skip(in, 1 << 16, sret);
            tag = (u8)sret[0];
            kind = (u8)sret[1];
            error = (u32)(sret[1] >> 32);
            if (!tag)
                got += sret[1];
        } else {
            blocking_read(in, 1 << 16, ret);
            tag = ((u8 *)ret)[0];
            kind = ((u8 *)ret)[4];
            error = ret[2];
            if (!tag)
                got += ret[2];
        }
        heap_top = mark;
        if (tag) {
            adds(&l, skip ? "skipped " : "");
            addu(&l, got);
            adds(&l, " bytes, ");
            add_failure(&l, kind, error);
            break;
        }
    }
    input_drop(in);
    u32 body = respond(outparam, &out);
    adds(&l, "\n");
    put(out, l.text);
    finish(body, out, 0);
}

static void trailers(u32 request, u32 outparam) {
    u32 in_body, out, ret[3];
    u32 in = body_stream(request, &in_body);
    u64 got = 0;
    for (;;) {
        usize mark = heap_top;
        blocking_read(in, 1 << 16, ret);
        heap_top = mark;
        if (((u8 *)ret)[0])
            break;
        got += ret[2];
    }
    input_drop(in);
    u32 future = incoming_body_finish(in_body);
    u32 ready = trailers_subscribe(future);
    pollable_block(ready);
    pollable_drop(ready);
    u8 r[64] __attribute__((aligned(8)));
    trailers_get(future, r);
    trailers_drop(future);
    struct line l = {.len = 0};
    addu(&l, got);
    adds(&l, " bytes, trailers=");
    /* option<result<result<option<own<fields>>, error-code>>>: tags at 0, 8, 16, 24 */
    if (!r[0])
        adds(&l, "pending");
    else if (r[8] || r[16])
        adds(&l, "error");
    else
        adds(&l, r[24] ? "some" : "none");
    adds(&l, "\n");
    u32 body = respond(outparam, &out);
    put(out, l.text);
    u32 sent = fields_new();
    u8 ar[2];
    fields_append(sent, "x-checksum", 10, (const u8 *)"42", 2, ar);
    finish(body, out, sent);
}

EXPORT("wasi:http/incoming-handler@0.2.0#handle") void handle(u32 request, u32 outparam) {
    u32 ret[3], out;
    request_path(request, ret);
    const char *path = ret[0] ? (const char *)ret[1] : "/";
    usize len = ret[0] ? ret[2] : 1;
    /* The route prefix stays in the path: match on its last segment. */
    for (usize i = len; i > 0; i--)
        if (path[i - 1] == '/') {
            len -= i - 1;
            path += i - 1;
            break;
        }
    if (starts(path, len, "/echo")) {
        echo(request, outparam, 0);
    } else if (starts(path, len, "/blocking")) {
        echo(request, outparam, 1);
    } else if (starts(path, len, "/count")) {
        count(request, outparam, 0);
    } else if (starts(path, len, "/skip")) {
        count(request, outparam, 1);
    } else if (starts(path, len, "/trailers")) {
        trailers(request, outparam);
    } else {
        u32 body = respond(outparam, &out);
        put(out, starts(path, len, "/ignore") ? "ignored\n" : "hello\n");
        finish(body, out, 0);
        request_drop(request);
    }
}
