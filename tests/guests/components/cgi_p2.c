/* A CGI test guest written directly against WASI 0.2 (wasi:cli, wasi:io).
 *
 * No libc: Debian's wasi-libc targets preview 1 only, so this file calls the
 * component-model imports itself through the canonical ABI, and build.sh
 * turns the core module into a component with `wasm-tools component embed`
 * + `component new` (world `cgi` in wit/). It exports wasi:cli/run#run.
 *
 * PATH_INFO picks what it does:
 *   /echo (or anything else)  method, query, path, URL, argv and the body
 *   /env                      every environment variable, one per line
 *   /stderr                   a line on stderr, then a short response
 *   /bad                      output that is not a CGI response
 *   /fail                     run returns err (the command's exit status 1)
 *   /exit                     wasi:cli/exit.exit(err)
 *   /trap                     unreachable
 *   /loop                     never returns
 *   /grow                     grows memory until refused, then traps
 *   /flood                    writes to stdout forever
 */

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long usize;

#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

IMPORT("wasi:cli/environment@0.2.0", "get-environment") void get_environment(u32 *ret);
IMPORT("wasi:cli/environment@0.2.0", "get-arguments") void get_arguments(u32 *ret);
IMPORT("wasi:cli/exit@0.2.0", "exit") void cli_exit(u32 is_err);
IMPORT("wasi:cli/stdin@0.2.0", "get-stdin") u32 get_stdin(void);
IMPORT("wasi:cli/stdout@0.2.0", "get-stdout") u32 get_stdout(void);
IMPORT("wasi:cli/stderr@0.2.0", "get-stderr") u32 get_stderr(void);
IMPORT("wasi:io/streams@0.2.0", "[method]input-stream.blocking-read")
void blocking_read(u32 self, u64 len, u32 *ret);
IMPORT("wasi:io/streams@0.2.0", "[method]output-stream.blocking-write-and-flush")
void blocking_write_and_flush(u32 self, const u8 *ptr, usize len, u32 *ret);
IMPORT("wasi:io/streams@0.2.0", "[resource-drop]input-stream") void drop_input_stream(u32 self);
IMPORT("wasi:io/streams@0.2.0", "[resource-drop]output-stream") void drop_output_stream(u32 self);

/* A bump allocator: the guest lives for one request. */
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
            return 0;
        heap_end += 65536;
    }
    heap_top = at + size;
    return (void *)at;
}

EXPORT("cabi_realloc") void *cabi_realloc(void *old, usize old_size, usize align, usize new_size) {
    u8 *fresh = alloc(new_size, align);
    if (!fresh)
        __builtin_trap();
    for (usize i = 0; old && i < old_size && i < new_size; i++)
        fresh[i] = ((u8 *)old)[i];
    return fresh;
}

/* Clang lowers fill and copy loops to these calls; there is no libc to supply them. */
void *memset(void *dst, int c, usize n) {
    volatile u8 *d = dst;
    while (n--)
        *d++ = (u8)c;
    return dst;
}

void *memcpy(void *dst, const void *src, usize n) {
    volatile u8 *d = dst;
    const u8 *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

static usize len(const char *s) {
    usize n = 0;
    while (s[n])
        n++;
    return n;
}

static int eq(const u8 *a, usize alen, const char *b) {
    usize blen = len(b);
    if (alen != blen)
        return 0;
    for (usize i = 0; i < alen; i++)
        if (a[i] != (u8)b[i])
            return 0;
    return 1;
}

static u32 out_stream, err_stream;

static void write_to(u32 stream, const void *data, usize n) {
    u32 ret[3];
    /* blocking-write-and-flush takes at most 4096 bytes per call. */
    while (n > 0) {
        usize chunk = n > 4096 ? 4096 : n;
        blocking_write_and_flush(stream, data, chunk, ret);
        if ((u8)ret[0] != 0)
            __builtin_trap(); /* stdout closed: nothing sensible left to do */
        data = (const u8 *)data + chunk;
        n -= chunk;
    }
}

static void put(const char *s) { write_to(out_stream, s, len(s)); }
static void put_n(const u8 *s, usize n) { write_to(out_stream, s, n); }

struct str { const u8 *ptr; usize len; };
struct pair { struct str key, value; };

static struct pair *env;
static usize env_len;

static struct str getenv_(const char *name) {
    for (usize i = 0; i < env_len; i++)
        if (eq(env[i].key.ptr, env[i].key.len, name))
            return env[i].value;
    struct str none = {(const u8 *)"", 0};
    return none;
}

static void put_var(const char *label, const char *name) {
    struct str v = getenv_(name);
    put(label);
    put_n(v.ptr, v.len);
    put("\n");
}

static void echo(void) {
    put("Content-Type: text/plain\nX-Guest: cgi-p2\n\n");
    put_var("method=", "REQUEST_METHOD");
    put_var("path=", "PATH_INFO");
    put_var("query=", "QUERY_STRING");
    put_var("url=", "X_FULL_URL");
    put_var("length=", "CONTENT_LENGTH");
    u32 args[2];
    get_arguments(args);
    struct str *argv = (struct str *)args[0];
    put("argv=");
    for (usize i = 0; i < args[1]; i++) {
        if (i)
            put("|");
        put_n(argv[i].ptr, argv[i].len);
    }
    put("\nbody=");
    u32 in = get_stdin();
    for (;;) {
        u32 ret[3];
        blocking_read(in, 65536, ret);
        if ((u8)ret[0] != 0)
            break; /* closed: the whole body has been read */
        if (ret[2] == 0)
            continue;
        put_n((const u8 *)ret[1], ret[2]);
    }
    drop_input_stream(in);
    put("\n");
}

EXPORT("wasi:cli/run@0.2.0#run") u32 run(void) {
    u32 list[2];
    get_environment(list);
    env = (struct pair *)list[0];
    env_len = list[1];
    out_stream = get_stdout();
    struct str path = getenv_("PATH_INFO");

    if (eq(path.ptr, path.len, "/env")) {
        put("Content-Type: text/plain\n\n");
        for (usize i = 0; i < env_len; i++) {
            put_n(env[i].key.ptr, env[i].key.len);
            put("=");
            put_n(env[i].value.ptr, env[i].value.len);
            put("\n");
        }
    } else if (eq(path.ptr, path.len, "/stderr")) {
        err_stream = get_stderr();
        write_to(err_stream, "guest says hello on stderr\n", 27);
        drop_output_stream(err_stream);
        put("Content-Type: text/plain\n\nsee stderr\n");
    } else if (eq(path.ptr, path.len, "/bad")) {
        put("this is not a CGI response\n");
    } else if (eq(path.ptr, path.len, "/fail")) {
        put("Content-Type: text/plain\n\nfailing\n");
        return 1;
    } else if (eq(path.ptr, path.len, "/exit")) {
        cli_exit(1);
    } else if (eq(path.ptr, path.len, "/trap")) {
        __builtin_trap();
    } else if (eq(path.ptr, path.len, "/loop")) {
        volatile u32 spin = 0;
        for (;;)
            spin++;
    } else if (eq(path.ptr, path.len, "/grow")) {
        while (__builtin_wasm_memory_grow(0, 16) != (usize)-1) {
        }
        __builtin_trap();
    } else if (eq(path.ptr, path.len, "/flood")) {
        static u8 block[4096];
        for (usize i = 0; i < sizeof block; i++)
            block[i] = 'x';
        put("Content-Type: text/plain\n\n");
        for (;;)
            put_n(block, sizeof block);
    } else {
        echo();
    }
    drop_output_stream(out_stream);
    return 0;
}
