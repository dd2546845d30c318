/* A wasi:http/proxy test guest written directly against WASI 0.2 (no libc).
 *
 * It exports wasi:http/incoming-handler@0.2.0#handle and calls the host's
 * wasi:http, wasi:io, wasi:clocks, wasi:filesystem and wasi:sockets imports
 * through the canonical ABI itself; build.sh turns it into a component with
 * `wasm-tools component embed` + `component new` (world `proxy-guest` in
 * proxy-wit/). Built twice: -DHELLO_ONLY gives proxy_hello.wasm, the minimal
 * hello of the benchmark; without it, proxy_guest.wasm, whose path picks
 * what it does:
 *
 *   /hello          200 "hello\n"
 *   /echo           the request body back; method, path with query, authority
 *                   and header count in x-echo-* headers; each x-* header back as echo-*
 *   /stream?N       N chunks written with check-write + write + flush
 *   /trap           sets the outparam, writes a chunk, then traps
 *   /noout          returns without setting the outparam
 *   /unfinished     drops the body without finishing it
 *   /loop           never returns
 *   /sleep          waits 60 s on a monotonic-clock pollable
 *   /fetch          GET http://{x-target-authority}{x-target-path}; the answer's status and body
 *   /deny           preopens, tcp socket, name lookup: each one's outcome in the body
 *   /twice          sets the outparam twice (the second time with a stale handle)
 *   /dropped        appends to a fields handle it already dropped
 *   /foreign        calls a fields method on an outgoing-response handle
 *   /overwrite      writes one byte more than check-write allowed
 *   /bigheaders     appends headers until refused; how many in x-appended
 *   /bigread        asks the body stream for 10^9 bytes at once; how many it got
 *   /flood          writes forever (stopped at the response cap)
 *   /hoard          fills fields after fields with 200-byte values until even a new one is refused;
 *                   how many values in x-values
 *   /mint           creates fields handles forever
 *   /fields         fields.from-list with a bad name, a CR LF value, a forbidden name and a good one,
 *                   and an append to the request's headers: each outcome in the body
 *   /exit-ok        answers "bye\n", then wasi:cli/exit.exit(ok)
 *   /exit-err       answers "bye\n", then wasi:cli/exit.exit(err)
 *   /log            a line on stdout, then "logged\n"
 *   /status?N       an empty response with status N
 *   /drip?N         N times: "tick I\n" (blocking-write-and-flush), then 300 ms on a monotonic-clock pollable
 *   /driptrap       "partial\n", 300 ms asleep, then traps (a failure after the response went out)
 *   /length?N       declares content-length: 6, writes N bytes (at most 12) of "hello\nhello\n" and finishes
 */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long usize;

#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))
#define HTTP "wasi:http/types@0.2.0"
#define IO "wasi:io/streams@0.2.0"

IMPORT(HTTP, "[constructor]fields") u32 fields_new(void);
IMPORT(HTTP, "[method]fields.append") void fields_append(u32, const char *, usize, const u8 *, usize, u8 *ret);
IMPORT(HTTP, "[method]fields.entries") void fields_entries(u32, u32 *ret);
IMPORT(HTTP, "[resource-drop]fields") void fields_drop(u32);
IMPORT(HTTP, "[method]incoming-request.path-with-query") void request_path(u32, u32 *ret);
IMPORT(HTTP, "[resource-drop]incoming-request") void request_drop(u32);
IMPORT(HTTP, "[constructor]outgoing-response") u32 response_new(u32 headers);
IMPORT(HTTP, "[method]outgoing-response.set-status-code") u32 response_set_status(u32, u32);
IMPORT(HTTP, "[method]outgoing-response.body") void response_body(u32, u32 *ret);
IMPORT(HTTP, "[resource-drop]outgoing-response") void response_drop(u32);
IMPORT(HTTP, "[method]outgoing-body.write") void body_write(u32, u32 *ret);
IMPORT(HTTP, "[static]outgoing-body.finish") void body_finish(u32, u32, u32, u8 *ret);
IMPORT(HTTP, "[resource-drop]outgoing-body") void body_drop(u32);
IMPORT(HTTP, "[static]response-outparam.set")
void outparam_set(u32, u32, u32, u32, u64, u32, u32, u32, u32);
IMPORT(IO, "[method]output-stream.blocking-write-and-flush") void write_and_flush(u32, const u8 *, usize, u8 *ret);
IMPORT(IO, "[resource-drop]output-stream") void output_drop(u32);

#ifndef HELLO_ONLY
IMPORT(HTTP, "[static]fields.from-list") void fields_from_list(const u32 *, usize, u32 *ret);
IMPORT(HTTP, "[method]incoming-request.method") void request_method(u32, u32 *ret);
IMPORT(HTTP, "[method]incoming-request.authority") void request_authority(u32, u32 *ret);
IMPORT(HTTP, "[method]incoming-request.headers") u32 request_headers(u32);
IMPORT(HTTP, "[method]incoming-request.consume") void request_consume(u32, u32 *ret);
IMPORT(HTTP, "[method]incoming-body.stream") void incoming_body_stream(u32, u32 *ret);
IMPORT(HTTP, "[resource-drop]incoming-body") void incoming_body_drop(u32);
IMPORT(HTTP, "[constructor]outgoing-request") u32 outreq_new(u32 headers);
IMPORT(HTTP, "[method]outgoing-request.set-scheme") u32 outreq_set_scheme(u32, u32, u32, const char *, usize);
IMPORT(HTTP, "[method]outgoing-request.set-authority") u32 outreq_set_authority(u32, u32, const char *, usize);
IMPORT(HTTP, "[method]outgoing-request.set-path-with-query") u32 outreq_set_path(u32, u32, const char *, usize);
IMPORT(HTTP, "[method]future-incoming-response.subscribe") u32 future_subscribe(u32);
IMPORT(HTTP, "[method]future-incoming-response.get") void future_get(u32, u8 *ret);
IMPORT(HTTP, "[method]incoming-response.status") u32 inresp_status(u32);
IMPORT(HTTP, "[method]incoming-response.consume") void inresp_consume(u32, u32 *ret);
IMPORT("wasi:http/outgoing-handler@0.2.0", "handle") void outgoing_handle(u32, u32, u32, u8 *ret);
IMPORT(IO, "[method]input-stream.blocking-read") void blocking_read(u32, u64, u32 *ret);
IMPORT(IO, "[resource-drop]input-stream") void input_drop(u32);
IMPORT(IO, "[method]output-stream.check-write") void check_write(u32, u64 *ret);
IMPORT(IO, "[method]output-stream.write") void stream_write(u32, const u8 *, usize, u8 *ret);
IMPORT(IO, "[method]output-stream.blocking-flush") void blocking_flush(u32, u8 *ret);
IMPORT("wasi:io/poll@0.2.0", "[method]pollable.block") void pollable_block(u32);
IMPORT("wasi:io/poll@0.2.0", "[resource-drop]pollable") void pollable_drop(u32);
IMPORT("wasi:clocks/monotonic-clock@0.2.0", "subscribe-duration") u32 subscribe_duration(u64);
IMPORT("wasi:cli/stdout@0.2.0", "get-stdout") u32 get_stdout(void);
IMPORT("wasi:cli/exit@0.2.0", "exit") void cli_exit(u32 is_err);
IMPORT("wasi:filesystem/preopens@0.2.0", "get-directories") void get_directories(u32 *ret);
IMPORT("wasi:sockets/instance-network@0.2.0", "instance-network") u32 instance_network(void);
IMPORT("wasi:sockets/tcp-create-socket@0.2.0", "create-tcp-socket") void create_tcp_socket(u32, u8 *ret);
IMPORT("wasi:sockets/ip-name-lookup@0.2.0", "resolve-addresses") void resolve_addresses(u32, const char *, usize, u8 *ret);
IMPORT("wasi:sockets/network@0.2.0", "[resource-drop]network") void network_drop(u32);
#endif

#ifdef WITH_KV
/* proxy_kv.wasm: the same guest with Spin's key-value (/kvset, /kvget), for tests/control/test_kv_delete.py. */
#define KV "fermyon:spin/key-value@2.0.0"
IMPORT(KV, "[static]store.open") void kv_open(const u8 *label, usize len, u32 *ret);
IMPORT(KV, "[method]store.get") void kv_get(u32 self, const u8 *key, usize len, u32 *ret);
IMPORT(KV, "[method]store.set") void kv_set(u32 self, const u8 *key, usize klen, const u8 *val, usize vlen, u32 *ret);
#endif

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

static void add_header(u32 fields, const char *name, const u8 *value, usize len) {
    u8 ret[2];
    fields_append(fields, name, slen(name), value, len, ret);
}

/* Set the outparam to a new response with `status`; returns the body's output stream in *out, the body. */
static u32 respond(u32 outparam, u32 fields, u32 status, u32 *out) {
    u32 response = response_new(fields);
    response_set_status(response, status);
    u32 ret[2];
    response_body(response, ret);
    u32 body = ret[1];
    outparam_set(outparam, 0, response, 0, 0, 0, 0, 0, 0);
    body_write(body, ret);
    *out = ret[1];
    return body;
}

static void finish(u32 body, u32 stream) {
    u8 ret[40];
    output_drop(stream);
    body_finish(body, 0, 0, ret);
}

static void put(u32 stream, const char *text) {
    u8 ret[12];
    write_and_flush(stream, (const u8 *)text, slen(text), ret);
}

__attribute__((unused)) static int starts(const char *s, usize len, const char *prefix) {
    usize n = slen(prefix);
    if (len < n)
        return 0;
    for (usize i = 0; i < n; i++)
        if (s[i] != prefix[i])
            return 0;
    return len == n || s[n] == '?';
}

#ifndef HELLO_ONLY
static char *utoa(u64 value, char *end) {
    *--end = 0;
    do {
        *--end = '0' + value % 10;
        value /= 10;
    } while (value);
    return end;
}

static u64 atou(const char *s, usize len) {
    u64 v = 0;
    for (usize i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

static const char *query(const char *path, usize len, usize *qlen) {
    for (usize i = 0; i < len; i++)
        if (path[i] == '?') {
            *qlen = len - i - 1;
            return path + i + 1;
        }
    *qlen = 0;
    return path + len;
}

/* Read the whole request body; returns its length, the bytes in *data. */
static usize read_body(u32 request, u8 **data, u64 chunk) {
    u32 ret[3];
    request_consume(request, ret);
    u32 body = ret[1];
    incoming_body_stream(body, ret);
    u32 stream = ret[1];
    usize cap = 1 << 16, len = 0;
    u8 *buf = alloc(cap, 1);
    for (;;) {
        blocking_read(stream, chunk, ret);
        if (((u8 *)ret)[0] != 0)
            break; /* closed */
        u8 *got = (u8 *)ret[1];
        usize n = ret[2];
        if (len + n > cap) {
            while (len + n > cap)
                cap *= 2;
            u8 *bigger = alloc(cap, 1);
            memcpy(bigger, buf, len);
            buf = bigger;
        }
        memcpy(buf + len, got, n);
        len += n;
        heap_top = (usize)got; /* the chunk was copied: give its space back */
    }
    input_drop(stream);
    incoming_body_drop(body);
    *data = buf;
    return len;
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

static void echo(u32 request, u32 outparam) {
    u32 fields = fields_new(), ret[3], out;
    char num[24];
    static const char *methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    request_method(request, ret);
    u8 tag = ((u8 *)ret)[0];
    if (tag < 9)
        add_header(fields, "x-echo-method", (const u8 *)methods[tag], slen(methods[tag]));
    else
        add_header(fields, "x-echo-method", (const u8 *)ret[1], ret[2]);
    request_path(request, ret);
    if (((u8 *)ret)[0])
        add_header(fields, "x-echo-path", (const u8 *)ret[1], ret[2]);
    request_authority(request, ret);
    if (((u8 *)ret)[0])
        add_header(fields, "x-echo-authority", (const u8 *)ret[1], ret[2]);
    u32 headers = request_headers(request);
    fields_entries(headers, ret);
    u32 *entries = (u32 *)ret[0];
    usize count = ret[1];
    char *n = utoa(count, num + sizeof num);
    add_header(fields, "x-echo-headers", (const u8 *)n, slen(n));
    for (usize i = 0; i < count; i++) {
        const char *name = (const char *)entries[4 * i];
        usize nlen = entries[4 * i + 1];
        if (nlen > 2 && name[0] == 'x' && name[1] == '-' && nlen < 100) {
            char echoed[112] = "echo-";
            memcpy(echoed + 5, name, nlen);
            echoed[5 + nlen] = 0;
            add_header(fields, echoed, (const u8 *)entries[4 * i + 2], entries[4 * i + 3]);
        }
    }
    fields_drop(headers);
    u8 *body;
    usize len = read_body(request, &body, 1 << 16);
    u32 obody = respond(outparam, fields, 200, &out);
    write_all(out, body, len);
    finish(obody, out);
}

static void fetch(u32 request, u32 outparam) {
    u32 headers = request_headers(request), ret[3], out;
    fields_entries(headers, ret);
    u32 *entries = (u32 *)ret[0];
    usize count = ret[1];
    const char *authority = "", *path = "/";
    usize alen = 0, plen = 1;
    for (usize i = 0; i < count; i++) {
        const char *name = (const char *)entries[4 * i];
        usize nlen = entries[4 * i + 1];
        if (nlen == 18 && starts(name, 18, "x-target-authority")) {
            authority = (const char *)entries[4 * i + 2];
            alen = entries[4 * i + 3];
        } else if (nlen == 13 && starts(name, 13, "x-target-path")) {
            path = (const char *)entries[4 * i + 2];
            plen = entries[4 * i + 3];
        }
    }
    u32 req = outreq_new(fields_new());
    outreq_set_scheme(req, 1, 0, 0, 0); /* some(HTTP) */
    outreq_set_authority(req, 1, authority, alen);
    outreq_set_path(req, 1, path, plen);
    u8 r[40] __attribute__((aligned(8)));
    outgoing_handle(req, 0, 0, r);
    u32 fields = fields_new();
    if (r[0]) { /* err(error-code) */
        char num[24];
        char *n = utoa(r[8], num + sizeof num);
        add_header(fields, "x-fetch-error", (const u8 *)n, slen(n));
        u32 body = respond(outparam, fields, 502, &out);
        put(out, "handle refused\n");
        finish(body, out);
        return;
    }
    u32 future = *(u32 *)(r + 4); /* result<own<future>, error-code>: payload at 8? see below */
    future = *(u32 *)(r + 8);
    u32 pollable = future_subscribe(future);
    pollable_block(pollable);
    pollable_drop(pollable);
    future_get(future, r);
    /* option<result<result<own<incoming-response>, error-code>>>: tags at 0, 8, 16; payload at 24 */
    if (!r[0] || r[8] || r[16]) {
        char num[24];
        char *n = utoa(r[16] ? r[24] : 255, num + sizeof num);
        add_header(fields, "x-fetch-error", (const u8 *)n, slen(n));
        u32 body = respond(outparam, fields, 502, &out);
        put(out, "fetch failed\n");
        finish(body, out);
        return;
    }
    u32 response = *(u32 *)(r + 24);
    u32 status = inresp_status(response);
    inresp_consume(response, ret);
    u32 inbody = ret[1];
    incoming_body_stream(inbody, ret);
    u32 stream = ret[1];
    u32 body = respond(outparam, fields, status, &out);
    for (;;) {
        blocking_read(stream, 4096, ret);
        if (((u8 *)ret)[0] != 0)
            break;
        write_all(out, (const u8 *)ret[1], ret[2]);
    }
    finish(body, out);
}

static void deny(u32 outparam) {
    u32 ret[3], out;
    char line[160], num[24];
    usize at = 0;
    get_directories(ret);
    const char *parts[8];
    parts[0] = "dirs=";
    parts[1] = utoa(ret[1], num + sizeof num);
    for (int i = 0; i < 2; i++)
        for (const char *p = parts[i]; *p; p++)
            line[at++] = *p;
    u8 r[16];
    create_tcp_socket(0, r);
    const char *t = r[0] ? " tcp=err:" : " tcp=ok:";
    for (const char *p = t; *p; p++)
        line[at++] = *p;
    for (const char *p = utoa(r[4], num + sizeof num); *p; p++)
        line[at++] = *p;
    u32 network = instance_network();
    resolve_addresses(network, "example.com", 11, r);
    t = r[0] ? " dns=err:" : " dns=ok:";
    for (const char *p = t; *p; p++)
        line[at++] = *p;
    for (const char *p = utoa(r[4], num + sizeof num); *p; p++)
        line[at++] = *p;
    network_drop(network);
    line[at++] = '\n';
    line[at] = 0;
    u32 body = respond(outparam, fields_new(), 200, &out);
    put(out, line);
    finish(body, out);
}
#endif

EXPORT("wasi:http/incoming-handler@0.2.0#handle") void handle(u32 request, u32 outparam) {
    u32 ret[3], out;
    request_path(request, ret);
    const char *path = ret[0] ? (const char *)ret[1] : "/";
    usize len = ret[0] ? ret[2] : 1;
#ifdef HELLO_ONLY
    (void)path;
    (void)len;
    u32 fields = fields_new();
    add_header(fields, "content-type", (const u8 *)"text/plain", 10);
    u32 body = respond(outparam, fields, 200, &out);
    put(out, "hello\n");
    finish(body, out);
    request_drop(request);
#else
    usize qlen;
    const char *q = query(path, len, &qlen);
    for (usize i = (usize)(q - path); i > 0; i--)
        if (path[i - 1] == '/') {
            len -= i - 1;
            path += i - 1;
            break;
        }
    if (starts(path, len, "/echo")) {
        echo(request, outparam);
    } else if (starts(path, len, "/stream")) {
        u64 n = atou(q, qlen), permit[2];
        u32 body = respond(outparam, fields_new(), 200, &out);
        char chunk[40], num[24];
        for (u64 i = 0; i < n; i++) {
            char *s = utoa(i, num + sizeof num);
            usize at = 0;
            for (const char *p = "chunk "; *p; p++)
                chunk[at++] = *p;
            for (; *s; s++)
                chunk[at++] = *s;
            chunk[at++] = '\n';
            check_write(out, permit);
            u8 r[12];
            stream_write(out, (const u8 *)chunk, at, r);
            blocking_flush(out, r);
        }
        finish(body, out);
    } else if (starts(path, len, "/trap")) {
        respond(outparam, fields_new(), 200, &out);
        put(out, "partial");
        __builtin_trap();
    } else if (starts(path, len, "/noout")) {
        request_drop(request);
    } else if (starts(path, len, "/unfinished")) {
        u32 body = respond(outparam, fields_new(), 200, &out);
        put(out, "half");
        output_drop(out);
        body_drop(body);
    } else if (starts(path, len, "/loop")) {
        for (volatile int i = 0;; i++) {
        }
    } else if (starts(path, len, "/sleep")) {
        u32 p = subscribe_duration(60ULL * 1000 * 1000 * 1000);
        pollable_block(p);
        u32 body = respond(outparam, fields_new(), 200, &out);
        put(out, "woke\n");
        finish(body, out);
    } else if (starts(path, len, "/fetch")) {
        fetch(request, outparam);
    } else if (starts(path, len, "/deny")) {
        deny(outparam);
    } else if (starts(path, len, "/twice")) {
        u32 response = response_new(fields_new());
        outparam_set(outparam, 0, response, 0, 0, 0, 0, 0, 0);
        outparam_set(outparam, 0, response_new(fields_new()), 0, 0, 0, 0, 0, 0);
    } else if (starts(path, len, "/dropped")) {
        u32 fields = fields_new();
        fields_drop(fields);
        add_header(fields, "x-a", (const u8 *)"b", 1);
    } else if (starts(path, len, "/foreign")) {
        u32 response = response_new(fields_new());
        add_header(response, "x-a", (const u8 *)"b", 1);
    } else if (starts(path, len, "/overwrite")) {
        u32 body = respond(outparam, fields_new(), 200, &out);
        u64 permit[2];
        u8 r[12];
        check_write(out, permit);
        stream_write(out, alloc(permit[1] + 1, 1), permit[1] + 1, r);
        finish(body, out);
    } else if (starts(path, len, "/bigheaders")) {
        u32 fields = fields_new();
        u64 n = 0;
        char name[32], num[24];
        for (;;) {
            char *s = utoa(n, num + sizeof num);
            usize at = 0;
            for (const char *p = "x-many-"; *p; p++)
                name[at++] = *p;
            for (; *s; s++)
                name[at++] = *s;
            name[at] = 0;
            u8 r[2];
            fields_append(fields, name, at, (const u8 *)"v", 1, r);
            if (r[0])
                break;
            n++;
        }
        u32 headers = fields_new();
        char *s = utoa(n, num + sizeof num);
        add_header(headers, "x-appended", (const u8 *)s, slen(s));
        fields_drop(fields);
        u32 body = respond(outparam, headers, 200, &out);
        finish(body, out);
    } else if (starts(path, len, "/bigread")) {
        u8 *data;
        usize n = read_body(request, &data, 1000000000ULL);
        char num[24];
        char *s = utoa(n, num + sizeof num);
        u32 body = respond(outparam, fields_new(), 200, &out);
        put(out, s);
        finish(body, out);
    } else if (starts(path, len, "/hoard")) {
        static u8 value[200];
        for (usize i = 0; i < sizeof value; i++)
            value[i] = 'v';
        u64 total = 0;
        char num[24];
        for (;;) {
            u32 fields = fields_new();
            u64 here = 0;
            for (;;) {
                u8 r[2];
                fields_append(fields, "x-hoard", 7, value, sizeof value, r);
                if (r[0])
                    break;
                here++;
            }
            total += here;
            if (here == 0)
                break;
        }
        u32 headers = fields_new();
        char *s = utoa(total, num + sizeof num);
        add_header(headers, "x-values", (const u8 *)s, slen(s));
        u32 body = respond(outparam, headers, 200, &out);
        finish(body, out);
    } else if (starts(path, len, "/exit-ok") || starts(path, len, "/exit-err")) {
        u32 body = respond(outparam, fields_new(), 200, &out);
        put(out, "bye\n");
        finish(body, out);
        cli_exit(path[6] == 'e');
    } else if (starts(path, len, "/fields")) {
        static const char *names[] = {"bad name", "x-ok", "connection", "x-ok"};
        static const char *values[] = {"v", "a\r\nb", "close", "v"};
        static const char *labels[] = {"badname=", " crlf=", " forbidden=", " ok="};
        char line[200], num[24];
        usize at = 0;
        for (int i = 0; i < 4; i++) {
            u32 entry[4] = {(u32)names[i], slen(names[i]), (u32)values[i], slen(values[i])};
            u32 r[2];
            fields_from_list(entry, 1, r);
            for (const char *p = labels[i]; *p; p++)
                line[at++] = *p;
            const char *outcome = ((u8 *)r)[0] ? "err:" : "ok";
            for (const char *p = outcome; *p; p++)
                line[at++] = *p;
            if (((u8 *)r)[0])
                for (const char *p = utoa(((u8 *)r)[4], num + sizeof num); *p; p++)
                    line[at++] = *p;
        }
        u32 headers = request_headers(request);
        u8 r[2];
        fields_append(headers, "x-more", 6, (const u8 *)"1", 1, r);
        for (const char *p = r[0] ? " immutable=err:" : " immutable=ok"; *p; p++)
            line[at++] = *p;
        if (r[0])
            for (const char *p = utoa(r[1], num + sizeof num); *p; p++)
                line[at++] = *p;
        line[at++] = '\n';
        line[at] = 0;
        u32 body = respond(outparam, fields_new(), 200, &out);
        put(out, line);
        finish(body, out);
    } else if (starts(path, len, "/mint")) {
        for (;;)
            fields_new();
    } else if (starts(path, len, "/flood")) {
        respond(outparam, fields_new(), 200, &out);
        static u8 block[4096];
        for (;;) {
            u8 r[12];
            write_and_flush(out, block, sizeof block, r);
            if (r[0])
                break;
        }
    } else if (starts(path, len, "/log")) {
        u32 stdout = get_stdout();
        put(stdout, "a line for the host log\n");
        output_drop(stdout);
        u32 body = respond(outparam, fields_new(), 200, &out);
        put(out, "logged\n");
        finish(body, out);
    } else if (starts(path, len, "/drip")) {
        u64 n = atou(q, qlen);
        u32 body = respond(outparam, fields_new(), 200, &out);
        char line[40], num[24];
        for (u64 i = 0; i < n; i++) {
            usize at = 0;
            for (const char *p = "tick "; *p; p++)
                line[at++] = *p;
            for (const char *p = utoa(i, num + sizeof num); *p; p++)
                line[at++] = *p;
            line[at++] = '\n';
            line[at] = 0;
            put(out, line);
            u32 p = subscribe_duration(300ULL * 1000 * 1000);
            pollable_block(p);
            pollable_drop(p);
        }
        finish(body, out);
    } else if (starts(path, len, "/driptrap")) {
        respond(outparam, fields_new(), 200, &out);
        put(out, "partial\n");
        u32 p = subscribe_duration(300ULL * 1000 * 1000);
        pollable_block(p);
        __builtin_trap();
    } else if (starts(path, len, "/length")) {
        u32 fields = fields_new();
        add_header(fields, "content-length", (const u8 *)"6", 1);
        u32 body = respond(outparam, fields, 200, &out);
        u64 n = atou(q, qlen);
        if (n)
            put(out, &"hello\nhello\n"[12 - (n > 12 ? 12 : n)]);
        finish(body, out);
    } else if (starts(path, len, "/grow")) {
        /* memory.grow a page at a time until it is refused (the store's memory limit); answer the
         * pages held in x-pages, or with a query, trap there as a C guest whose malloc got NULL does. */
        alloc(0, 1);
        usize pages = __builtin_wasm_memory_size(0);
        while (__builtin_wasm_memory_grow(0, 1) != (usize)-1)
            pages++;
        if (qlen)
            __builtin_trap();
        heap_end = pages * 65536;
        char num[24];
        char *s = utoa(pages, num + sizeof num);
        u32 fields = fields_new();
        add_header(fields, "x-pages", (const u8 *)s, slen(s));
        u32 body = respond(outparam, fields, 200, &out);
        finish(body, out);
#ifdef WITH_KV
    } else if (starts(path, len, "/kvset") || starts(path, len, "/kvget")) {
        /* Store "default": /kvset?KEY=VALUE sets KEY, /kvget?KEY answers its value (404 if none);
         * a refusal by the host answers 500 with the error's case number in x-kv-error. */
        u32 r[4], status = 200;
        const u8 *value = (const u8 *)q;
        usize klen = 0, vlen = 0;
        while (klen < qlen && q[klen] != '=')
            klen++;
        kv_open((const u8 *)"default", 7, r);
        if ((u8)r[0] == 0) {
            u32 store = r[1];
            if (path[3] == 's') {
                if (klen < qlen) {
                    value = (const u8 *)q + klen + 1;
                    vlen = qlen - klen - 1;
                }
                kv_set(store, (const u8 *)q, klen, value, vlen, r);
                vlen = 0;
            } else {
                kv_get(store, (const u8 *)q, klen, r);
                if ((u8)r[0] == 0 && (u8)r[1] == 0)
                    status = 404;
                else if ((u8)r[0] == 0) {
                    value = (const u8 *)r[2];
                    vlen = r[3];
                }
            }
        }
        u32 fields = fields_new();
        if ((u8)r[0] != 0) {
            status = 500;
            char num[24];
            char *s = utoa((u8)r[1], num + sizeof num);
            add_header(fields, "x-kv-error", (const u8 *)s, slen(s));
        }
        u32 body = respond(outparam, fields, status, &out);
        if (vlen)
            write_all(out, value, vlen);
        finish(body, out);
#endif
    } else if (starts(path, len, "/status")) {
        u32 body = respond(outparam, fields_new(), (u32)atou(q, qlen), &out);
        finish(body, out);
    } else {
        u32 fields = fields_new();
        add_header(fields, "content-type", (const u8 *)"text/plain", 10);
        u32 body = respond(outparam, fields, 200, &out);
        put(out, "hello\n");
        finish(body, out);
        request_drop(request);
    }
#endif
}
