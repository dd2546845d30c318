/* A wasi:cli command that calls Spin's platform interfaces through the
 * canonical ABI by hand (no libc, no bindings generator: see build.sh) and
 * prints what each call returned, CGI-style.
 *
 * The query string is a list of operations, '&'-separated, run in order; each
 * prints one line. Arguments are raw (no percent-decoding); VALUE may not hold '&'.
 *   open=LABEL        open a store; later operations use the last one opened
 *   close             drop the current store
 *   get=KEY  has=KEY  del=KEY  set=KEY:VALUE  keys
 *   setn=KEY:N        set KEY to N bytes of 'x'
 *   keyn=N            set a key of N bytes of 'k' to "v"
 *   fill=N            set keys f0..f(N-1) to "v"; stop at the first error
 *   opens=N           open N stores without dropping any; stop at the first error
 *   cycle=N           open and drop a store N times
 *   stale             open a store, drop it, then call get with the dropped handle (traps)
 *   var=NAME          fermyon:spin/variables get
 *   config=KEY        wasi:config/store get
 *   configall         wasi:config/store get-all: NAME=VALUE pairs, ','-separated
 *   redis=ADDR        fermyon:spin/redis connection.open (refused with an error)
 *   llm               fermyon:spin/llm generate-embeddings (refused with an error)
 */

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long usize;

#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))
#define KV "fermyon:spin/key-value@2.0.0"

IMPORT("wasi:cli/environment@0.2.0", "get-environment") void get_environment(u32 *ret);
IMPORT("wasi:cli/stdout@0.2.0", "get-stdout") u32 get_stdout(void);
IMPORT("wasi:io/streams@0.2.0", "[method]output-stream.blocking-write-and-flush")
void blocking_write_and_flush(u32 self, const u8 *ptr, usize len, u32 *ret);
IMPORT(KV, "[static]store.open") void kv_open(const u8 *label, usize len, u32 *ret);
IMPORT(KV, "[method]store.get") void kv_get(u32 self, const u8 *key, usize len, u32 *ret);
IMPORT(KV, "[method]store.set") void kv_set(u32 self, const u8 *key, usize klen, const u8 *val, usize vlen, u32 *ret);
IMPORT(KV, "[method]store.delete") void kv_delete(u32 self, const u8 *key, usize len, u32 *ret);
IMPORT(KV, "[method]store.exists") void kv_exists(u32 self, const u8 *key, usize len, u32 *ret);
IMPORT(KV, "[method]store.get-keys") void kv_get_keys(u32 self, u32 *ret);
IMPORT(KV, "[resource-drop]store") void kv_drop(u32 self);
IMPORT("fermyon:spin/variables@2.0.0", "get") void var_get(const u8 *name, usize len, u32 *ret);
IMPORT("wasi:config/store@0.2.0-draft-2024-09-27", "get") void config_get(const u8 *key, usize len, u32 *ret);
IMPORT("wasi:config/store@0.2.0-draft-2024-09-27", "get-all") void config_get_all(u32 *ret);
IMPORT("fermyon:spin/redis@2.0.0", "[static]connection.open") void redis_open(const u8 *addr, usize len, u32 *ret);
IMPORT("fermyon:spin/llm@2.0.0", "generate-embeddings")
void llm_embeddings(const u8 *model, usize mlen, const void *text, usize tlen, u32 *ret);

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

struct str { const u8 *ptr; usize len; };
struct pair { struct str key, value; };

static usize len(const char *s) {
    usize n = 0;
    while (s[n])
        n++;
    return n;
}

static int eq(struct str a, const char *b) {
    usize blen = len(b);
    if (a.len != blen)
        return 0;
    for (usize i = 0; i < blen; i++)
        if (a.ptr[i] != (u8)b[i])
            return 0;
    return 1;
}

static u32 out_stream;

static void put_n(const void *data, usize n) {
    u32 ret[3];
    while (n > 0) {
        usize chunk = n > 4096 ? 4096 : n;
        blocking_write_and_flush(out_stream, data, chunk, ret);
        if ((u8)ret[0] != 0)
            __builtin_trap();
        data = (const u8 *)data + chunk;
        n -= chunk;
    }
}

static void put(const char *s) { put_n(s, len(s)); }
static void put_s(struct str s) { put_n(s.ptr, s.len); }

static void put_u(usize n) {
    char buf[24];
    int i = 23;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    put(buf + i);
}

static usize parse_u(struct str s) {
    usize n = 0;
    for (usize i = 0; i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9'; i++)
        n = n * 10 + (s.ptr[i] - '0');
    return n;
}

static u8 *filled(usize n, u8 c) {
    u8 *p = alloc(n ? n : 1, 1);
    if (!p)
        __builtin_trap();
    memset(p, c, n);
    return p;
}

/* The error of a result<_, error> laid out at ret: tag at +4, string at +8/+12. */
static const char *const kv_errors[] = {"store-table-full", "no-such-store", "access-denied", "other"};
static const char *const var_errors[] = {"invalid-name", "undefined", "provider", "other"};
static const char *const redis_errors[] = {"invalid-address", "too-many-connections", "type-error", "other"};
static const char *const config_errors[] = {"upstream", "io"};
static const char *const llm_errors[] = {"model-not-supported", "runtime-error", "invalid-input"};

static void put_err(const u32 *ret, const char *const *names, int with_text) {
    u8 tag = *((const u8 *)ret + 4);
    put("err ");
    put(names[tag]);
    if (with_text) {
        put(" ");
        put_n((const u8 *)ret[2], ret[3]);
    }
}

static void put_kv_err(const u32 *ret) { put_err(ret, kv_errors, *((const u8 *)ret + 4) == 3); }

static u32 store = 0;
static int have_store = 0;

static int open_store(struct str label, u32 *ret) {
    kv_open(label.ptr, label.len, ret);
    return (u8)ret[0] == 0;
}

static void op(struct str name, struct str arg) {
    u32 ret[4];
    put_s(name);
    put(": ");
    if (eq(name, "open")) {
        if (open_store(arg, ret)) {
            if (have_store)
                kv_drop(store);
            store = ret[1];
            have_store = 1;
            put("ok ");
            put_u(store);
        } else {
            put_kv_err(ret);
        }
    } else if (eq(name, "close")) {
        kv_drop(store);
        have_store = 0;
        put("ok");
    } else if (eq(name, "get")) {
        kv_get(store, arg.ptr, arg.len, ret);
        if ((u8)ret[0] != 0) {
            put_kv_err(ret);
        } else if (*((u8 *)ret + 4) == 0) {
            put("none");
        } else {
            put("some ");
            put_u(ret[3]);
            put(" ");
            put_n((const u8 *)ret[2], ret[3] > 64 ? 64 : ret[3]);
        }
    } else if (eq(name, "has")) {
        kv_exists(store, arg.ptr, arg.len, ret);
        if ((u8)ret[0] != 0)
            put_kv_err(ret);
        else
            put(*((u8 *)ret + 4) ? "true" : "false");
    } else if (eq(name, "del")) {
        kv_delete(store, arg.ptr, arg.len, ret);
        if ((u8)ret[0] != 0)
            put_kv_err(ret);
        else
            put("ok");
    } else if (eq(name, "set") || eq(name, "setn")) {
        usize colon = 0;
        while (colon < arg.len && arg.ptr[colon] != ':')
            colon++;
        struct str key = {arg.ptr, colon};
        struct str value = {arg.ptr + colon + 1, colon < arg.len ? arg.len - colon - 1 : 0};
        if (eq(name, "setn")) {
            value.len = parse_u(value);
            value.ptr = filled(value.len, 'x');
        }
        kv_set(store, key.ptr, key.len, value.ptr, value.len, ret);
        if ((u8)ret[0] != 0)
            put_kv_err(ret);
        else
            put("ok");
    } else if (eq(name, "keyn")) {
        usize n = parse_u(arg);
        kv_set(store, filled(n, 'k'), n, (const u8 *)"v", 1, ret);
        if ((u8)ret[0] != 0)
            put_kv_err(ret);
        else
            put("ok");
    } else if (eq(name, "keys")) {
        kv_get_keys(store, ret);
        if ((u8)ret[0] != 0) {
            put_kv_err(ret);
        } else {
            struct str *keys = (struct str *)ret[1];
            put_u(ret[2]);
            for (usize i = 0; i < ret[2] && i < 20; i++) {
                put(i ? "," : " ");
                put_s(keys[i]);
            }
        }
    } else if (eq(name, "fill")) {
        usize n = parse_u(arg), i = 0;
        for (; i < n; i++) {
            char key[24] = "f";
            usize k = 1, v = i;
            char digits[20];
            int d = 0;
            do {
                digits[d++] = (char)('0' + v % 10);
                v /= 10;
            } while (v);
            while (d)
                key[k++] = digits[--d];
            kv_set(store, (const u8 *)key, k, (const u8 *)"v", 1, ret);
            if ((u8)ret[0] != 0)
                break;
        }
        put_u(i);
        if (i < n) {
            put(" ");
            put_kv_err(ret);
        }
    } else if (eq(name, "opens")) {
        usize n = parse_u(arg), i = 0;
        struct str label = {(const u8 *)"default", 7};
        for (; i < n; i++)
            if (!open_store(label, ret))
                break;
        put_u(i);
        if (i < n) {
            put(" ");
            put_kv_err(ret);
        }
    } else if (eq(name, "cycle")) {
        usize n = parse_u(arg), i = 0;
        struct str label = {(const u8 *)"default", 7};
        for (; i < n; i++) {
            if (!open_store(label, ret))
                break;
            kv_drop(ret[1]);
        }
        put_u(i);
    } else if (eq(name, "stale")) {
        struct str label = {(const u8 *)"default", 7};
        if (!open_store(label, ret))
            __builtin_trap();
        u32 dropped = ret[1];
        kv_drop(dropped);
        put("calling get on a dropped handle\n");
        kv_get(dropped, (const u8 *)"k", 1, ret);
        put("the host answered");
    } else if (eq(name, "var")) {
        var_get(arg.ptr, arg.len, ret);
        if ((u8)ret[0] == 0) {
            put("ok ");
            put_n((const u8 *)ret[1], ret[2]);
        } else {
            put_err(ret, var_errors, 1);
        }
    } else if (eq(name, "config")) {
        config_get(arg.ptr, arg.len, ret);
        if ((u8)ret[0] != 0) {
            put_err(ret, config_errors, 1);
        } else if (*((u8 *)ret + 4) == 0) {
            put("none");
        } else {
            put("some ");
            put_n((const u8 *)ret[2], ret[3]);
        }
    } else if (eq(name, "configall")) {
        config_get_all(ret);
        if ((u8)ret[0] != 0) {
            put_err(ret, config_errors, 1);
        } else {
            struct pair *pairs = (struct pair *)ret[1];
            put_u(ret[2]);
            for (usize i = 0; i < ret[2]; i++) {
                put(i ? "," : " ");
                put_s(pairs[i].key);
                put("=");
                put_s(pairs[i].value);
            }
        }
    } else if (eq(name, "redis")) {
        redis_open(arg.ptr, arg.len, ret);
        if ((u8)ret[0] == 0)
            put("ok");
        else
            put_err(ret, redis_errors, *((const u8 *)ret + 4) == 3);
    } else if (eq(name, "llm")) {
        /* result<embeddings-result, error>: the payload at +4 again (both cases are 4-aligned). */
        struct str text = {(const u8 *)"hello", 5};
        llm_embeddings((const u8 *)"all-minilm-l6-v2", 16, &text, 1, ret);
        if ((u8)ret[0] == 0)
            put("ok");
        else
            put_err(ret, llm_errors, *((const u8 *)ret + 4) != 0);
    } else {
        put("unknown operation");
    }
    put("\n");
}

EXPORT("wasi:cli/run@0.2.0#run") u32 run(void) {
    u32 list[2];
    get_environment(list);
    struct pair *env = (struct pair *)list[0];
    struct str query = {(const u8 *)"", 0};
    for (usize i = 0; i < list[1]; i++)
        if (eq(env[i].key, "QUERY_STRING"))
            query = env[i].value;
    out_stream = get_stdout();
    put("Content-Type: text/plain\n\n");
    usize start = 0;
    while (start < query.len) {
        usize end = start;
        while (end < query.len && query.ptr[end] != '&')
            end++;
        usize eqat = start;
        while (eqat < end && query.ptr[eqat] != '=')
            eqat++;
        struct str name = {query.ptr + start, eqat - start};
        struct str arg = {query.ptr + (eqat < end ? eqat + 1 : end), eqat < end ? end - eqat - 1 : 0};
        op(name, arg);
        start = end + 1;
    }
    return 0;
}
