/* wasi:http host functions entered from wasmtime without ctypes' generic callback (guest/_proxy/_abi.py).

   A component's host function is a C callback that wasmtime calls with the arguments as an array
   of `wasmtime_component_val_t` and an array to write the results into. Through a ctypes callback
   (`_abi._call`) each call decodes its arguments and encodes its result in Python: a struct read, a
   ctypes call per resource, a boxed value built in a ctypes object. A hello request makes twelve
   such calls, and that glue was about a third of its in-process time. Here the callback is C: it
   takes the GIL, decodes every argument into the Python value `_abi._decode` gives (same kinds,
   same values, same errors), calls the Python host function, and writes the result itself for the
   common shapes (`own<T>`, `result<own<T>, E>` and `result<_, E>` when ok, `option<string>`); any
   other result goes to the function's Python encoder, as before. The wasmtime calls are the same,
   in the same order, as the ctypes path's.

   It uses the Python C API, so it is built against this interpreter's headers (guest/_native.py);
   wasmtime's functions are passed in `struct api` (no wasmtime header, nothing linked). A
   `wasmtime_component_val_t` is 32 bytes: its kind (a byte) at 0, its payload (a union) at 8; see
   `_abi`'s docstring for each kind's payload. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef void *(*any_to_host_fn)(void *, const void *, void **);
typedef uint32_t (*host_rep_fn)(const void *);
typedef void (*host_delete_fn)(void *);
typedef void *(*host_new_fn)(bool, uint32_t, uint32_t);
typedef void *(*host_to_any_fn)(void *, const void *, void **);
typedef void *(*val_new_fn)(void *);
typedef void (*byte_vec_new_fn)(void *, size_t, const char *);
typedef void *(*error_new_fn)(const char *);
typedef void (*list_new_uninit_fn)(void *, size_t);

struct api {
    any_to_host_fn any_to_host;
    host_rep_fn host_rep;
    host_delete_fn host_delete;
    host_new_fn host_new;
    host_to_any_fn host_to_any;
    val_new_fn val_new;
    byte_vec_new_fn byte_vec_new;
    error_new_fn error_new;
    list_new_uninit_fn list_new_uninit;
    /* the kinds of wasmtime_component_val_t (wasmtime-py's constants) */
    uint8_t k_bool, k_u8, k_u16, k_u32, k_u64, k_s32, k_s64, k_string, k_list, k_record, k_tuple, k_variant,
        k_enum, k_option, k_result, k_flags, k_resource;
};

/* How a function's result is written (`_abi.add_func` picks it from the encoder). */
enum {
    PLAN_PYTHON = 0,        /* the Python encoder writes it */
    PLAN_OWN = 1,           /* own<type> from a rep */
    PLAN_RESULT_OWN = 2,    /* result<own<type>, E>: (True, rep) here, anything else in Python */
    PLAN_RESULT_UNIT = 3,   /* result<_, E>: (True, _) here, anything else in Python */
    PLAN_OPTION_STRING = 4, /* option<string>: None or a str here, anything else in Python */
    PLAN_BYTES = 5,         /* list<u8>: a bytes-like object here, anything else in Python */
    PLAN_RESULT_BYTES = 6,  /* result<list<u8>, E>: (True, bytes-like) here, anything else in Python */
};

struct func {
    PyObject *call;   /* the host function */
    PyObject *encode; /* its encoder, encode(context, value, address), or None */
    int32_t plan;
    uint32_t type; /* the resource type of PLAN_OWN and PLAN_RESULT_OWN */
};

struct destructor {
    PyObject *destroy; /* destroy(rep) */
};

#define VAL 32
#define OF 8

static struct api A;
static PyObject *fail_fn;       /* _abi.fail(exc) -> the address of a new wasmtime_error_t */
static PyObject *exception_fn;  /* _abi.wasmtime_error(address) -> the exception (the error freed) */
static PyObject *trap_type;     /* _abi.Trap */

/* Once, before any callback: wasmtime's functions and the Python objects the callbacks use. */
int wasmlet_hostcall_init(const struct api *api, PyObject *fail, PyObject *to_exception, PyObject *trap) {
    A = *api;
    Py_XINCREF(fail);
    Py_XINCREF(to_exception);
    Py_XINCREF(trap);
    fail_fn = fail;
    exception_fn = to_exception;
    trap_type = trap;
    return 0;
}

size_t wasmlet_hostcall_api_size(void) { return sizeof(struct api); }
size_t wasmlet_hostcall_func_size(void) { return sizeof(struct func); }

static inline size_t read_size(const uint8_t *p) { size_t v; memcpy(&v, p, sizeof v); return v; }
static inline const uint8_t *read_ptr(const uint8_t *p) { const uint8_t *v; memcpy(&v, p, sizeof v); return v; }

/* wasmtime's error (an address it returned) raised as the Python exception _abi would raise; NULL. */
static PyObject *raise_wasmtime(void *error) {
    PyObject *exc = PyObject_CallFunction(exception_fn, "K", (unsigned long long)(uintptr_t)error);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static PyObject *text(const uint8_t *p) {
    return PyUnicode_DecodeUTF8((const char *)read_ptr(p + 8), (Py_ssize_t)read_size(p), NULL);
}

static PyObject *decode(void *context, const uint8_t *at);

static PyObject *boxed(void *context, const uint8_t *box) {
    if (box == NULL) Py_RETURN_NONE;
    return decode(context, box);
}

static PyObject *rep_of(void *context, const uint8_t *payload) {
    void *host = NULL;
    void *error = A.any_to_host(context, read_ptr(payload), &host);
    if (error) return raise_wasmtime(error);
    /* For a borrow the conversion also ends it (no resource_any_drop follows: see _abi._to_rep). */
    uint32_t rep = A.host_rep(host);
    A.host_delete(host);
    return PyLong_FromUnsignedLong(rep);
}

/* A sequence of `size` values from `data` (32 bytes each), as a
   list (tuple: false) or tuple (true). */
static PyObject *values(void *context, const uint8_t *data, size_t size, bool tuple) {
    PyObject *out = tuple ? PyTuple_New((Py_ssize_t)size) : PyList_New((Py_ssize_t)size);
    if (out == NULL) return NULL;
    for (size_t i = 0; i < size; i++) {
        PyObject *item = decode(context, data + i * VAL);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        if (tuple) PyTuple_SET_ITEM(out, (Py_ssize_t)i, item);
        else PyList_SET_ITEM(out, (Py_ssize_t)i, item);
    }
    return out;
}

/* The value at `at` as _abi._decode gives it. */
static PyObject *decode(void *context, const uint8_t *at) {
    uint8_t kind = at[0];
    const uint8_t *p = at + OF;
    if (kind == A.k_resource) return rep_of(context, p);
    if (kind == A.k_string) return text(p);
    if (kind == A.k_list) {
        size_t size = read_size(p);
        const uint8_t *data = read_ptr(p + 8);
        if (size == 0) return PyList_New(0);
        if (data[0] == A.k_u8) { /* list<u8>: bytes */
            PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
            if (out == NULL) return NULL;
            char *bytes = PyBytes_AS_STRING(out);
            for (size_t i = 0; i < size; i++) bytes[i] = (char)data[i * VAL + OF];
            return out;
        }
        return values(context, data, size, false);
    }
    if (kind == A.k_u8) return PyLong_FromUnsignedLong(p[0]);
    if (kind == A.k_u16) { uint16_t v; memcpy(&v, p, sizeof v); return PyLong_FromUnsignedLong(v); }
    if (kind == A.k_u32) { uint32_t v; memcpy(&v, p, sizeof v); return PyLong_FromUnsignedLong(v); }
    if (kind == A.k_u64) { uint64_t v; memcpy(&v, p, sizeof v); return PyLong_FromUnsignedLongLong(v); }
    if (kind == A.k_s32) { int32_t v; memcpy(&v, p, sizeof v); return PyLong_FromLong(v); }
    if (kind == A.k_s64) { int64_t v; memcpy(&v, p, sizeof v); return PyLong_FromLongLong(v); }
    if (kind == A.k_bool) return PyBool_FromLong(p[0] != 0);
    if (kind == A.k_option) return boxed(context, read_ptr(p));
    if (kind == A.k_result) {
        PyObject *payload = boxed(context, read_ptr(p + 8));
        if (payload == NULL) return NULL;
        PyObject *ok = PyBool_FromLong(p[0] != 0);
        PyObject *out = PyTuple_Pack(2, ok, payload);
        Py_DECREF(ok);
        Py_DECREF(payload);
        return out;
    }
    if (kind == A.k_variant) {
        PyObject *name = text(p);
        if (name == NULL) return NULL;
        PyObject *payload = boxed(context, read_ptr(p + 16));
        if (payload == NULL) {
            Py_DECREF(name);
            return NULL;
        }
        PyObject *out = PyTuple_Pack(2, name, payload);
        Py_DECREF(name);
        Py_DECREF(payload);
        return out;
    }
    if (kind == A.k_enum) return text(p);
    if (kind == A.k_tuple) return values(context, read_ptr(p + 8), read_size(p), true);
    if (kind == A.k_record) {
        size_t size = read_size(p);
        const uint8_t *data = read_ptr(p + 8);
        PyObject *out = PyDict_New();
        for (size_t i = 0; out != NULL && i < size; i++) {
            const uint8_t *entry = data + i * 48; /* the name (size, data), then the value at 16 */
            PyObject *name = text(entry);
            PyObject *value = name == NULL ? NULL : decode(context, entry + 16);
            if (value == NULL || PyDict_SetItem(out, name, value) < 0) Py_CLEAR(out);
            Py_XDECREF(name);
            Py_XDECREF(value);
        }
        return out;
    }
    if (kind == A.k_flags) {
        size_t size = read_size(p);
        const uint8_t *data = read_ptr(p + 8);
        PyObject *out = PySet_New(NULL);
        for (size_t i = 0; out != NULL && i < size; i++) {
            PyObject *name = text(data + i * 16);
            if (name == NULL || PySet_Add(out, name) < 0) Py_CLEAR(out);
            Py_XDECREF(name);
        }
        return out;
    }
    PyErr_Format(trap_type, "wasmlet: unsupported argument kind %d", (int)kind);
    return NULL;
}

/* A new owned handle of `type` for the rep `value`, written at `out` (its kind last); -1 if it fails. */
static int own_into(void *context, PyObject *value, uint32_t type, uint8_t *out) {
    unsigned long rep = PyLong_AsUnsignedLong(value);
    if (rep == (unsigned long)-1 && PyErr_Occurred()) return -1;
    if (rep > UINT32_MAX) {
        PyErr_Format(PyExc_OverflowError, "wasmlet: resource rep %lu is out of range", rep);
        return -1;
    }
    void *host = A.host_new(true, (uint32_t)rep, type);
    void *error = A.host_to_any(context, host, (void **)(out + OF));
    A.host_delete(host);
    if (error) {
        raise_wasmtime(error);
        return -1;
    }
    out[0] = A.k_resource;
    return 0;
}

/* A result (or option) whose payload is the value at `inner`, boxed; `inner` is consumed. */
static void write_result(uint8_t *out, bool ok, uint8_t *inner) {
    void *box = inner == NULL ? NULL : A.val_new(inner); /* moves inner's contents into a new box */
    memset(out + OF, 0, 16);
    out[OF] = ok;
    memcpy(out + OF + 8, &box, sizeof box);
    out[0] = A.k_result;
}

/* The ok value of a (True, payload) pair, borrowed; NULL (no error set) for anything else. */
static PyObject *ok_payload(PyObject *value) {
    if (!PyTuple_CheckExact(value) || PyTuple_GET_SIZE(value) != 2) return NULL;
    int ok = PyObject_IsTrue(PyTuple_GET_ITEM(value, 0));
    if (ok != 1) {
        if (ok < 0) PyErr_Clear(); /* the Python encoder meets the same value and says what is wrong */
        return NULL;
    }
    return PyTuple_GET_ITEM(value, 1);
}

/* list<u8> from a bytes-like `value` at `out` (kind last): 1 written, 0 not bytes-like (no error), -1 failed.
   The C API has no byte-list form: one 32-byte value per byte (see _abi.bytes_list). */
static int bytes_into(PyObject *value, uint8_t *out) {
    if (!PyObject_CheckBuffer(value)) return 0;
    Py_buffer view;
    if (PyObject_GetBuffer(value, &view, PyBUF_SIMPLE) < 0) return -1;
    size_t size = (size_t)view.len;
    A.list_new_uninit(out + OF, size);
    uint8_t *data = (uint8_t *)read_ptr(out + OF + 8);
    const uint8_t *bytes = view.buf;
    for (size_t i = 0; i < size; i++) {
        uint8_t *item = data + i * VAL;
        memset(item, 0, VAL);
        item[0] = A.k_u8;
        item[OF] = bytes[i];
    }
    PyBuffer_Release(&view);
    out[0] = A.k_list;
    return 1;
}

static int python_encode(const struct func *f, void *context, PyObject *value, uint8_t *out) {
    if (f->encode == Py_None) {
        PyErr_SetString(trap_type, "wasmlet: a host function without an encoder was asked for a result");
        return -1;
    }
    PyObject *done = PyObject_CallFunction(f->encode, "KOK", (unsigned long long)(uintptr_t)context, value,
                                           (unsigned long long)(uintptr_t)out);
    if (done == NULL) return -1;
    Py_DECREF(done);
    return 0;
}

static int encode(const struct func *f, void *context, PyObject *value, uint8_t *out) {
    uint8_t inner[VAL];
    PyObject *payload;
    switch (f->plan) {
    case PLAN_OWN:
        return own_into(context, value, f->type, out);
    case PLAN_RESULT_OWN:
        if ((payload = ok_payload(value)) == NULL) break;
        memset(inner, 0, sizeof inner);
        if (own_into(context, payload, f->type, inner) < 0) return -1;
        write_result(out, true, inner);
        return 0;
    case PLAN_RESULT_UNIT:
        if (ok_payload(value) == NULL) break;
        write_result(out, true, NULL);
        return 0;
    case PLAN_OPTION_STRING:
        if (value == Py_None) {
            memset(out + OF, 0, 8);
            out[0] = A.k_option;
            return 0;
        }
        if (PyUnicode_CheckExact(value)) {
            Py_ssize_t size;
            const char *data = PyUnicode_AsUTF8AndSize(value, &size);
            if (data == NULL) return -1;
            memset(inner, 0, sizeof inner);
            A.byte_vec_new(inner + OF, (size_t)size, data);
            inner[0] = A.k_string;
            void *box = A.val_new(inner);
            memcpy(out + OF, &box, sizeof box);
            out[0] = A.k_option;
            return 0;
        }
        break;
    case PLAN_BYTES: {
        int done = bytes_into(value, out);
        if (done != 0) return done < 0 ? -1 : 0;
        break;
    }
    case PLAN_RESULT_BYTES: {
        if ((payload = ok_payload(value)) == NULL) break;
        memset(inner, 0, sizeof inner);
        int done = bytes_into(payload, inner);
        if (done < 0) return -1;
        if (done == 0) break;
        write_result(out, true, inner);
        return 0;
    }
    }
    return python_encode(f, context, value, out);
}

/* The Python exception in flight as a new wasmtime_error_t (through _abi.fail), cleared. */
static void *failure(void) {
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *value = PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
#endif
    void *error = NULL;
    if (value != NULL) {
        PyObject *address = PyObject_CallOneArg(fail_fn, value);
        if (address != NULL) {
            error = PyLong_AsVoidPtr(address);
            Py_DECREF(address);
        }
    }
    Py_XDECREF(value);
    if (error == NULL) {
        PyErr_Clear();
        error = A.error_new("wasmlet: host function failed");
    }
    return error;
}

#define MAX_STACK_ARGS 8

/* A host function's callback (wasmtime_component_func_callback_t): NULL, or the error to trap with. */
void *wasmlet_host_call(void *data, void *context, const void *type, uint8_t *args, size_t nargs,
                        uint8_t *results, size_t nresults) {
    (void)type;
    const struct func *f = data;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *stack[MAX_STACK_ARGS];
    PyObject **argv = stack;
    void *error = NULL;
    size_t decoded = 0;
    if (nargs > MAX_STACK_ARGS && (argv = PyMem_Malloc(nargs * sizeof *argv)) == NULL) {
        PyErr_NoMemory();
        error = failure();
        PyGILState_Release(gil);
        return error;
    }
    for (; decoded < nargs; decoded++) {
        if ((argv[decoded] = decode(context, args + decoded * VAL)) == NULL) break;
    }
    if (decoded == nargs) {
        PyObject *value = PyObject_Vectorcall(f->call, argv, nargs, NULL);
        if (value != NULL) {
            if (nresults == 0 || encode(f, context, value, results) == 0) error = NULL;
            else error = failure();
            Py_DECREF(value);
        } else {
            error = failure();
        }
    } else {
        error = failure();
    }
    for (size_t i = 0; i < decoded; i++) Py_DECREF(argv[i]);
    if (argv != stack) PyMem_Free(argv);
    PyGILState_Release(gil);
    return error;
}

/* A host resource's destructor (wasmtime_component_resource_destructor_t): NULL, or the error. */
void *wasmlet_host_drop(void *data, void *context, uint32_t rep) {
    (void)context;
    const struct destructor *d = data;
    PyGILState_STATE gil = PyGILState_Ensure();
    void *error = NULL;
    PyObject *done = PyObject_CallFunction(d->destroy, "k", (unsigned long)rep);
    if (done != NULL) Py_DECREF(done);
    else error = failure();
    PyGILState_Release(gil);
    return error;
}
