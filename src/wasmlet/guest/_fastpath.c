/* One WAGI request's C calls in one crossing from Python (guest/_native.py).

   WagiHandler makes about fifteen wasmtime C API calls per request (guest/_capi.py): a WASI
   config, a store with its limits and deadline callback, the instance and the call. Through
   ctypes each costs 0.2-0.8 us of argument conversion and GIL hand-off besides the work
   itself; here they are made in a row, in the same order and with the same arguments, from
   one ctypes call (which releases the GIL for all of it, as each call did).

   The functions are wasmtime's own, found by Python in wasmtime-py's libwasmtime and passed
   in `struct api`; the structures wasmtime writes into (the instance, an extern, the trap
   slot) are Python's, passed by address with the offsets that matter: this file includes no
   wasmtime header and links against nothing, so it builds with any C compiler.

   At its end, the same idea for wasi:http components: a resource's conversions in one crossing. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef void *(*config_new_fn)(void);
typedef void (*config_delete_fn)(void *);
typedef bool (*config_set_argv_fn)(void *, size_t, const char *const *);
typedef bool (*config_set_env_fn)(void *, size_t, const char *const *, const char *const *);
typedef void (*config_set_stdin_bytes_fn)(void *, void *);
typedef bool (*config_set_file_fn)(void *, const char *);
typedef void *(*store_new_fn)(void *, void *, void *);
typedef void *(*store_context_fn)(void *);
typedef void (*store_delete_fn)(void *);
typedef void (*store_limiter_fn)(void *, int64_t, int64_t, int64_t, int64_t, int64_t);
typedef void (*epoch_callback_fn)(void *, void *, void *, void *);
typedef void *(*context_set_wasi_fn)(void *, void *);
typedef void (*context_set_epoch_deadline_fn)(void *, uint64_t);
typedef void *(*instance_pre_instantiate_fn)(void *, void *, void *, void **);
typedef bool (*instance_export_get_fn)(void *, void *, const char *, size_t, void *);
typedef void *(*func_call_fn)(void *, void *, const void *, size_t, void *, size_t, void **);
typedef size_t (*memory_data_size_fn)(void *, void *);

struct api {
    config_new_fn config_new;
    config_delete_fn config_delete;
    config_set_argv_fn config_set_argv;
    config_set_env_fn config_set_env;
    config_set_stdin_bytes_fn config_set_stdin_bytes;
    config_set_file_fn config_set_stdout_file;
    config_set_file_fn config_set_stderr_file;
    store_new_fn store_new;
    store_context_fn store_context;
    store_delete_fn store_delete;
    store_limiter_fn store_limiter;
    epoch_callback_fn store_epoch_deadline_callback;
    context_set_wasi_fn context_set_wasi;
    context_set_epoch_deadline_fn context_set_epoch_deadline;
    instance_pre_instantiate_fn instance_pre_instantiate;
    instance_export_get_fn instance_export_get;
    func_call_fn func_call;
    memory_data_size_fn memory_data_size;
};

/* Where a run stopped (run.stage), for Python to raise what the Python path raises. */
enum {
    DONE = 0,         /* the entry point returned (or trapped: run.trap, or failed: run.error) */
    FILES = 1,        /* stdout or stderr could not be opened: Python renews the scratch files */
    CONFIG = 2,       /* the environment or argv was refused (not UTF-8) */
    SET_WASI = 3,     /* run.error from wasmtime_context_set_wasi */
    INSTANTIATE = 4,  /* run.error or run.trap from instantiation */
    NO_ENTRY = 5,     /* the module exports no function of that name */
};

struct run {
    /* in */
    void *engine;
    void *pre;
    size_t envc;
    const char *const *names;
    const char *const *values;
    const char *values_joined; /* or the values as one block, each ended by its NUL (then `values` is unused) */
    size_t argc;
    const char *const *argv;
    const char *argv_joined;   /* likewise for argv */
    void *stdin_vec; /* a filled wasm_byte_vec_t, or NULL for no body */
    const char *stdout_path;
    const char *stderr_path;
    int64_t memory;
    uint64_t epoch_deadline;
    void *deadline_callback;
    void *deadline_data;
    void *deadline_finalizer;
    const char *entry;
    size_t entry_len;
    void *instance;  /* wasmtime_instance_t */
    void *extern_;   /* wasmtime_extern_t: kind (uint8_t) at 0, the union at of_offset */
    size_t of_offset;
    uint8_t func_kind;
    uint8_t memory_kind;
    bool want_memory;
    /* out */
    int stage;
    void *error; /* an owned wasmtime_error_t *, or NULL */
    void *trap;  /* an owned wasm_trap_t *, or NULL */
    int64_t instantiated_ns;
    uint64_t memory_size;
};

static void *export_of(const struct api *api, void *context, struct run *run, const char *name, size_t len,
                       uint8_t kind) {
    if (!api->instance_export_get(context, run->instance, name, len, run->extern_)) return NULL;
    if (*(uint8_t *)run->extern_ != kind) return NULL;
    return (char *)run->extern_ + run->of_offset;
}

/* The `count` strings laid end to end in `joined` (Python checked it holds exactly that many NULs). */
static void split(const char *joined, size_t count, const char **out) {
    for (size_t i = 0; i < count; i++) {
        out[i] = joined;
        joined += strlen(joined) + 1;
    }
}

int wasmlet_fastpath_run(const struct api *api, struct run *run) {
    run->error = run->trap = NULL;
    run->instantiated_ns = 0;
    run->memory_size = 0;
    /* Python bounds the counts of joined strings (MAX_JOINED in _native.py), so these fit the stack. */
    const char *values_split[run->values_joined && run->envc ? run->envc : 1];
    const char *argv_split[run->argv_joined && run->argc ? run->argc : 1];
    const char *const *values = run->values;
    const char *const *argv = run->argv;
    if (run->values_joined) {
        split(run->values_joined, run->envc, values_split);
        values = values_split;
    }
    if (run->argv_joined) {
        split(run->argv_joined, run->argc, argv_split);
        argv = argv_split;
    }
    void *config = api->config_new();
    if (run->stdin_vec) api->config_set_stdin_bytes(config, run->stdin_vec); /* the config takes the vector */
    if (!api->config_set_env(config, run->envc, run->names, values) ||
        !api->config_set_argv(config, run->argc, argv)) {
        api->config_delete(config);
        return run->stage = CONFIG;
    }
    if (!api->config_set_stdout_file(config, run->stdout_path) ||
        !api->config_set_stderr_file(config, run->stderr_path)) {
        api->config_delete(config);
        return run->stage = FILES;
    }
    void *store = api->store_new(run->engine, NULL, NULL);
    void *context = api->store_context(store);
    api->store_limiter(store, run->memory, -1, 2, 4, 1); /* 2 instances: the sleep trampoline (_sleep) */
    /* From here on the store's deletion calls the finalizer, which forgets the watch. */
    api->store_epoch_deadline_callback(store, run->deadline_callback, run->deadline_data, run->deadline_finalizer);
    run->error = api->context_set_wasi(context, config); /* takes the config, also on error */
    if (run->error) {
        api->store_delete(store);
        return run->stage = SET_WASI;
    }
    api->context_set_epoch_deadline(context, run->epoch_deadline);
    run->stage = INSTANTIATE;
    run->error = api->instance_pre_instantiate(run->pre, context, run->instance, &run->trap);
    if (!run->error && !run->trap) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        run->instantiated_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        void *func = export_of(api, context, run, run->entry, run->entry_len, run->func_kind);
        if (!func) {
            run->stage = NO_ENTRY;
        } else {
            run->stage = DONE;
            run->error = api->func_call(context, func, NULL, 0, NULL, 0, &run->trap);
        }
        if (run->want_memory || run->error || run->trap) {
            void *memory = export_of(api, context, run, "memory", 6, run->memory_kind);
            if (memory) run->memory_size = api->memory_data_size(context, memory);
        }
    }
    api->store_delete(store); /* the pool slot and WASI's handles on the scratch files, released now */
    return run->stage;
}

/* Checked by Python before the first run: its ctypes mirrors of the structures must match these. */
size_t wasmlet_fastpath_run_size(void) { return sizeof(struct run); }
size_t wasmlet_fastpath_api_size(void) { return sizeof(struct api); }

/* wasi:http components (guest/_proxy/_abi.py): a resource handed to or by a host function, converted
   in one crossing instead of three. Through ctypes each conversion is three C calls (the host
   resource made, read or converted, then freed), about 1 us together; a hello request makes
   fifteen of them. The functions are wasmtime's, passed in `struct resource_api` as for `struct api`.

   A `wasmtime_component_val_t` is 32 bytes: its kind (a byte) at 0, its payload at 8 (for a
   resource: the pointer to its `wasmtime_component_resource_any_t`). */

typedef void *(*any_to_host_fn)(void *, const void *, void **);
typedef uint32_t (*host_rep_fn)(const void *);
typedef void (*host_delete_fn)(void *);
typedef void *(*host_new_fn)(bool, uint32_t, uint32_t);
typedef void *(*host_to_any_fn)(void *, const void *, void **);

struct resource_api {
    any_to_host_fn any_to_host;
    host_rep_fn host_rep;
    host_delete_fn host_delete;
    host_new_fn host_new;
    host_to_any_fn host_to_any;
};

/* The host rep of the resource `any` (a borrow ends with the conversion: wasmtime lifts it out of
   the table), or, if wasmtime refuses it, minus the address of its `wasmtime_error_t`. */
int64_t wasmlet_resource_rep(const struct resource_api *api, void *context, const void *any) {
    void *host = NULL;
    void *error = api->any_to_host(context, any, &host);
    if (error) return -(int64_t)(uintptr_t)error;
    uint32_t rep = api->host_rep(host);
    api->host_delete(host);
    return rep;
}

/* A new owned handle of host resource type `type` for `rep`, written as the value at `out` (its
   kind last, so a failure leaves the value as it was); NULL, or wasmtime's error. */
void *wasmlet_resource_own(const struct resource_api *api, void *context, uint32_t rep, uint32_t type,
                           uint8_t *out, uint8_t kind) {
    void *host = api->host_new(true, rep, type);
    void *error = api->host_to_any(context, host, (void **)(out + 8));
    api->host_delete(host);
    if (!error) out[0] = kind;
    return error;
}

size_t wasmlet_resource_api_size(void) { return sizeof(struct resource_api); }

/* A wasi:http component's request in one crossing (guest/_proxy/_handler.py, `ProxyHandler._run`): the
   store with its limits and deadline callback, the instance, the handler's two arguments (new owned
   handles for the request and the outparam Python made) and the call, then the store deleted. The
   same wasmtime calls, in the same order, as the ctypes path; the guest's host calls come back into
   Python as they do there (wasmtime calls Python's callbacks; they take the GIL this call let go). */

typedef void *(*component_instantiate_fn)(const void *, void *, const void *, void *);
typedef bool (*component_get_func_fn)(const void *, void *, const void *, void *);
typedef void *(*component_func_call_fn)(const void *, void *, const void *, size_t, void *, size_t);
typedef void (*component_val_delete_fn)(void *);

struct component_api {
    store_new_fn store_new;
    store_context_fn store_context;
    store_delete_fn store_delete;
    store_limiter_fn store_limiter;
    epoch_callback_fn store_epoch_deadline_callback;
    context_set_epoch_deadline_fn context_set_epoch_deadline;
    component_instantiate_fn instantiate;
    component_get_func_fn get_func;
    component_func_call_fn func_call;
    component_val_delete_fn val_delete;
    struct resource_api resources;
};

/* Where a component run stopped (component_run.stage). */
enum {
    C_DONE = 0,         /* the handler returned (or failed: error) */
    C_INSTANTIATE = 1,  /* error from instantiation */
    C_NO_HANDLER = 2,   /* the export is not a function */
    C_ARGUMENTS = 3,    /* error making the handles of the two arguments */
};

/* wasmtime_component_instance_t and wasmtime_component_func_t fit in this (Python checks their sizes). */
#define COMPONENT_ITEM_WORDS 4

struct component_run {
    /* in */
    void *engine;
    void *linker;
    void *component;
    void *handler; /* the export index of incoming-handler#handle */
    int64_t memory;
    int64_t instances;
    int64_t tables;
    int64_t memories;
    void *deadline_callback;
    void *deadline_data;
    uint64_t epoch_deadline;
    uint32_t request_rep;
    uint32_t request_type;
    uint32_t outparam_rep;
    uint32_t outparam_type;
    uint8_t resource_kind;
    /* out */
    int stage;
    void *error; /* an owned wasmtime_error_t *, or NULL */
    int64_t instantiated_ns;
};

int wasmlet_component_run(const struct component_api *api, struct component_run *run) {
    uint64_t instance[COMPONENT_ITEM_WORDS] = {0}, func[COMPONENT_ITEM_WORDS] = {0};
    uint64_t args[8] = {0}; /* two wasmtime_component_val_t of 32 bytes: kind at 0, payload at 8 */
    run->error = NULL;
    run->instantiated_ns = 0;
    void *store = api->store_new(run->engine, NULL, NULL);
    api->store_limiter(store, run->memory, -1, run->instances, run->tables, run->memories);
    api->store_epoch_deadline_callback(store, run->deadline_callback, run->deadline_data, NULL);
    void *context = api->store_context(store);
    api->context_set_epoch_deadline(context, run->epoch_deadline);
    run->stage = C_INSTANTIATE;
    run->error = api->instantiate(run->linker, context, run->component, instance);
    if (!run->error) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        run->instantiated_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        if (!api->get_func(instance, context, run->handler, func)) {
            run->stage = C_NO_HANDLER;
        } else {
            run->stage = C_ARGUMENTS;
            uint8_t *request = (uint8_t *)&args[0], *outparam = (uint8_t *)&args[4];
            run->error = wasmlet_resource_own(&api->resources, context, run->request_rep, run->request_type,
                                              request, run->resource_kind);
            if (!run->error)
                run->error = wasmlet_resource_own(&api->resources, context, run->outparam_rep,
                                                  run->outparam_type, outparam, run->resource_kind);
            if (!run->error) {
                run->stage = C_DONE;
                run->error = api->func_call(func, context, args, 2, NULL, 0);
            }
            /* The arguments stay the caller's (as in Python's path): a handle the guest did not take
               is dropped with them. One whose making failed kept its kind 0 (a bool): nothing to free. */
            if (request[0] == run->resource_kind) api->val_delete(request);
            if (outparam[0] == run->resource_kind) api->val_delete(outparam);
        }
    }
    api->store_delete(store); /* the instance with it */
    return run->stage;
}

size_t wasmlet_component_run_size(void) { return sizeof(struct component_run); }
size_t wasmlet_component_api_size(void) { return sizeof(struct component_api); }
