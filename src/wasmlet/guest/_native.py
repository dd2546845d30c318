"""The WAGI request path's C calls made in one crossing, by a small C helper built here.

``_fastpath.c`` makes, in one call from Python, the wasmtime C API calls a WAGI
request needs (``WagiHandler._run``): about fifteen ctypes crossings become one,
which saves ~10 us a request (``bench/hotpath.py``). It includes no wasmtime
header and links against nothing: wasmtime's functions are looked up here, in
the libwasmtime wasmtime-py loaded, and handed to it.

It is compiled from source on first use with the machine's C compiler (``cc``,
``clang`` or ``gcc``; ``make test`` installs clang) into the cache folder
(``$XDG_CACHE_HOME/wasmlet/native``, named by the source's digest), and loaded
from there afterwards. Without a compiler, or with ``WASMLET_NATIVE=0``, the
request path makes the same calls one by one through ctypes (``_capi``): the
behaviour is the same either way, only the cost differs.

The helper also converts a ``wasi:http`` component's resources (``_proxy/_abi.py``,
``use_native``): one crossing for what takes three ctypes calls.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TypeVar

from wasmtime import _ffi as ffi

from . import _capi as capi
from ._watch import ON_DEADLINE

__all__ = ["CONFIG", "C_ARGUMENTS", "C_DONE", "C_INSTANTIATE", "C_NO_HANDLER", "DONE", "FILES", "INSTANTIATE",
           "MAX_JOINED", "NATIVE_ENV", "NO_ENTRY", "PLAN_BYTES", "PLAN_OPTION_STRING", "PLAN_OWN", "PLAN_PYTHON",
           "PLAN_RESULT_BYTES", "PLAN_RESULT_OWN", "PLAN_RESULT_UNIT", "SET_WASI", "ComponentRun", "FastPath",
           "HostCalls", "HostDestructor", "HostFunc", "Run", "fast_path", "host_calls", "joined", "library_path",
           "new_run"]

log = logging.getLogger("wasmlet.guest")
_Helper = TypeVar("_Helper")

NATIVE_ENV = "WASMLET_NATIVE"  # "0": make the calls through ctypes (to compare, or without a compiler)
_SOURCE = Path(__file__).with_name("_fastpath.c")
_COMPILERS = ("cc", "clang", "gcc")
_BUILD_TIMEOUT = 120.0

_vp = ctypes.c_void_p

# What wasmlet_fastpath_run's `struct api` holds, in its order: wasmtime's own functions.
_API = ("wasi_config_new", "wasi_config_delete", "wasi_config_set_argv", "wasi_config_set_env",
        "wasi_config_set_stdin_bytes", "wasi_config_set_stdout_file", "wasi_config_set_stderr_file",
        "wasmtime_store_new", "wasmtime_store_context", "wasmtime_store_delete", "wasmtime_store_limiter",
        "wasmtime_store_epoch_deadline_callback", "wasmtime_context_set_wasi",
        "wasmtime_context_set_epoch_deadline", "wasmtime_instance_pre_instantiate", "wasmtime_instance_export_get",
        "wasmtime_func_call", "wasmtime_memory_data_size")


class _Api(ctypes.Structure):
    _fields_ = [(name, _vp) for name in _API]


# What wasmlet_resource_rep/_own's `struct resource_api` holds, in its order (wasi:http components).
_RESOURCE_API = ("wasmtime_component_resource_any_to_host", "wasmtime_component_resource_host_rep",
                 "wasmtime_component_resource_host_delete", "wasmtime_component_resource_host_new",
                 "wasmtime_component_resource_host_to_any")


class _ResourceApi(ctypes.Structure):
    _fields_ = [(name, _vp) for name in _RESOURCE_API]


# What wasmlet_component_run's `struct component_api` holds, in its order, then a `struct resource_api`.
_COMPONENT_API = ("wasmtime_store_new", "wasmtime_store_context", "wasmtime_store_delete", "wasmtime_store_limiter",
                  "wasmtime_store_epoch_deadline_callback", "wasmtime_context_set_epoch_deadline",
                  "wasmtime_component_linker_instantiate", "wasmtime_component_instance_get_func",
                  "wasmtime_component_func_call", "wasmtime_component_val_delete")


class _ComponentApi(ctypes.Structure):
    _fields_ = [*((name, _vp) for name in _COMPONENT_API), ("resources", _ResourceApi)]


class ComponentRun(ctypes.Structure):
    """``struct component_run`` of ``_fastpath.c``: one wasi:http request's inputs, and where it stopped."""

    _fields_ = [
        ("engine", _vp), ("linker", _vp), ("component", _vp), ("handler", _vp),
        ("memory", ctypes.c_int64), ("instances", ctypes.c_int64), ("tables", ctypes.c_int64),
        ("memories", ctypes.c_int64),
        ("deadline_callback", _vp), ("deadline_data", _vp), ("epoch_deadline", ctypes.c_uint64),
        ("request_rep", ctypes.c_uint32), ("request_type", ctypes.c_uint32),
        ("outparam_rep", ctypes.c_uint32), ("outparam_type", ctypes.c_uint32),
        ("resource_kind", ctypes.c_uint8),
        ("stage", ctypes.c_int), ("error", _vp), ("instantiated_ns", ctypes.c_int64),
    ]


# ComponentRun.stage: where the run stopped (the second enum of _fastpath.c).
C_DONE, C_INSTANTIATE, C_NO_HANDLER, C_ARGUMENTS = range(4)
_COMPONENT_ITEM_BYTES = 32  # COMPONENT_ITEM_WORDS: room for an instance and a func on the helper's stack


class Run(ctypes.Structure):
    """``struct run`` of ``_fastpath.c``: one request's inputs, and what the run left."""

    _fields_ = [
        ("engine", _vp), ("pre", _vp),
        ("envc", ctypes.c_size_t), ("names", _vp), ("values", _vp), ("values_joined", ctypes.c_char_p),
        ("argc", ctypes.c_size_t), ("argv", _vp), ("argv_joined", ctypes.c_char_p),
        ("stdin_vec", _vp), ("stdout_path", ctypes.c_char_p), ("stderr_path", ctypes.c_char_p),
        ("memory", ctypes.c_int64), ("epoch_deadline", ctypes.c_uint64),
        ("deadline_callback", _vp), ("deadline_data", _vp), ("deadline_finalizer", _vp),
        ("entry", ctypes.c_char_p), ("entry_len", ctypes.c_size_t),
        ("instance", _vp), ("extern_", _vp), ("of_offset", ctypes.c_size_t),
        ("func_kind", ctypes.c_uint8), ("memory_kind", ctypes.c_uint8), ("want_memory", ctypes.c_bool),
        ("stage", ctypes.c_int), ("error", _vp), ("trap", _vp),
        ("instantiated_ns", ctypes.c_int64), ("memory_size", ctypes.c_uint64),
    ]


# Run.stage: where the run stopped (the enum of _fastpath.c).
DONE, FILES, CONFIG, SET_WASI, INSTANTIATE, NO_ENTRY = range(6)
# Strings one joined block may hold: the helper splits it into an array on its stack, 8 bytes each.
MAX_JOINED = 4096


def joined(strings: Collection[str]) -> bytes | None:
    """``strings`` as one block of NUL-ended strings (``Run.values_joined``, ``Run.argv_joined``), or ``None``
    when one of them holds a NUL or there are too many: then the caller passes a ``char **``.

    One join and one encoding instead of one per string and an array of
    addresses built in Python (~2 us for a request's 22 variables). A NUL
    inside a string would shift every string after it, so such a block is
    never made: the ``char **`` path reads each string up to its first NUL.
    """
    count = len(strings)
    text = "\0".join(strings)
    if count > MAX_JOINED or text.count("\0") != count - 1:
        return None
    return text.encode("utf-8", "surrogateescape")


class FastPath:
    """The loaded helper: ``run(lane_run)`` makes one request's calls (see ``_fastpath.c``).

    ``resource_rep(resource_api, context, any)`` and ``resource_own(resource_api, context, rep,
    type, value, kind)`` convert a component's resources (``guest/_proxy/_abi.py``); they keep
    the GIL (a ``PyDLL`` function): they are a few C calls that never wait.
    """

    def __init__(self, library: ctypes.CDLL) -> None:
        for name, mirror in (("wasmlet_fastpath_run_size", Run), ("wasmlet_fastpath_api_size", _Api),
                             ("wasmlet_resource_api_size", _ResourceApi),
                             ("wasmlet_component_run_size", ComponentRun),
                             ("wasmlet_component_api_size", _ComponentApi)):
            size = getattr(library, name)
            size.restype, size.argtypes = ctypes.c_size_t, []
            if size() != ctypes.sizeof(mirror):  # an edit to one side only: never run on a wrong layout
                raise OSError(f"{name}() is {size()}, the ctypes mirror {ctypes.sizeof(mirror)} bytes")
        dll = capi._dll
        self._api = _Api(*(ctypes.cast(dll[name], _vp).value for name in _API))
        self._api_at = ctypes.addressof(self._api)
        function = library.wasmlet_fastpath_run
        function.restype = ctypes.c_int
        function.argtypes = [_vp, _vp]
        self._function = function
        for item in (ffi.wasmtime_component_instance_t, ffi.wasmtime_component_func_t):
            if ctypes.sizeof(item) > _COMPONENT_ITEM_BYTES:
                raise OSError(f"{item.__name__} is {ctypes.sizeof(item)} bytes, the helper has room for "
                              f"{_COMPONENT_ITEM_BYTES}")
        self._resource_api = _ResourceApi(*(ctypes.cast(dll[name], _vp).value for name in _RESOURCE_API))
        self.resource_api = ctypes.addressof(self._resource_api)
        self._component_api = _ComponentApi(*(ctypes.cast(dll[name], _vp).value for name in _COMPONENT_API),
                                            self._resource_api)
        self._component_api_at = ctypes.addressof(self._component_api)
        component_run = library.wasmlet_component_run  # a CDLL function: it releases the GIL, as the guest runs
        component_run.restype = ctypes.c_int
        component_run.argtypes = [_vp, _vp]
        self._component_run = component_run
        short = ctypes.PyDLL(library._name, handle=library._handle)
        self.resource_rep = short.wasmlet_resource_rep
        self.resource_rep.restype, self.resource_rep.argtypes = ctypes.c_int64, [_vp, _vp, _vp]
        self.resource_own = short.wasmlet_resource_own
        self.resource_own.restype = _vp
        self.resource_own.argtypes = [_vp, _vp, ctypes.c_uint32, ctypes.c_uint32, _vp, ctypes.c_uint8]

    def run(self, run_at: int) -> int:
        """Run the request described at ``run_at`` (a ``Run``'s address); its ``stage``."""
        return int(self._function(self._api_at, run_at))

    def run_component(self, run_at: int) -> int:
        """Run the wasi:http request described at ``run_at`` (a ``ComponentRun``'s address); its ``stage``."""
        return int(self._component_run(self._component_api_at, run_at))


def new_run(lane: capi.Lane) -> tuple[Run, int]:
    """A ``Run`` wired to ``lane``'s structures (one per thread, as the lane), and its address."""
    run = Run()
    run.instance = lane.instance_at
    run.extern_ = lane.extern_at
    run.of_offset = ffi.wasmtime_extern_t.of.offset
    run.func_kind = int(ffi.WASMTIME_EXTERN_FUNC.value)
    run.memory_kind = int(ffi.WASMTIME_EXTERN_MEMORY.value)
    run.deadline_callback = ON_DEADLINE
    run.deadline_finalizer = None  # the caller forgets the watch: the store never outlives the run
    return run, ctypes.addressof(run)


def library_path(source: bytes, name: str = "fastpath") -> Path:
    """Where the helper built from ``source`` is kept: named by its digest, so an edited source is built anew.

    A library is only ever replaced by renaming a new file over it, never rewritten
    in place: a process that has it loaded would fault on the changed pages.
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(source + platform.machine().encode()).hexdigest()[:16]
    return Path(base) / "wasmlet" / "native" / f"{name}-{digest}.so"


def _untrusted(path: Path) -> str:
    """Why the library at ``path`` (or its folder) must not be loaded, or "" if it may.

    It is native code run in the server: only this user may have written it, as
    for the module cache's artifacts (``engine/_cache.py``).
    """
    for item, what in ((path.parent, "folder"), (path, "file")):
        info = os.lstat(item)
        if stat.S_ISLNK(info.st_mode):
            return f"the {what} {item} is a symbolic link"
        if info.st_uid != os.geteuid():
            return f"the {what} {item} belongs to uid {info.st_uid}, not this user"
        if info.st_mode & 0o022:
            return f"the {what} {item} is writable by others (mode {stat.S_IMODE(info.st_mode):04o})"
    if not stat.S_ISREG(os.lstat(path).st_mode):
        return f"{path} is not a regular file"
    return ""


def _build(source: bytes, target: Path, flags: Sequence[str] = (), what: str = "the native request path") -> bool:
    compiler = next((found for name in _COMPILERS if (found := shutil.which(name))), None)
    if compiler is None:
        log.info("no C compiler (cc, clang, gcc): %s is not built; ctypes makes its calls", what)
        return False
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        c_file = Path(work) / "helper.c"
        c_file.write_bytes(source)
        built = Path(work) / "helper.so"
        command = [compiler, "-O2", "-shared", "-fPIC", "-Wall", "-Werror", *flags, "-o", str(built), str(c_file)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=_BUILD_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("cannot build %s (%s): ctypes makes its calls", what, exc)
            return False
        if done.returncode != 0:
            log.warning("cannot build %s: %s: ctypes makes its calls", what,
                        (done.stderr or done.stdout).strip()[:2000])
            return False
        os.chmod(built, 0o755)  # whatever the umask: a group-writable library would be refused (_untrusted)
        os.replace(built, target)  # atomic: another process building the same source sees all or nothing
    return True


def _load(source: bytes, target: Path, what: str, fallback: str, make: Callable[[str], _Helper],
          flags: Sequence[str] = ()) -> _Helper | None:
    """``make(path)`` on the library built from ``source`` at ``target`` (built if need be), or ``None``.

    ``None`` when it cannot be built, may not be trusted (``_untrusted``) or cannot be
    loaded, with a line on the log saying why and that ``fallback`` is what happens instead.
    """
    try:
        if not os.path.lexists(target) and not _build(source, target, flags, what):
            return None
        refused = _untrusted(target)
        if refused:
            log.warning("%s is not loaded: %s; %s", what, refused, fallback)
            return None
        return make(str(target))
    except OSError as exc:  # a cache folder that cannot be written, a library that cannot be loaded
        log.warning("cannot load %s (%s): %s", what, exc, fallback)
        return None


def _enabled() -> bool:
    """Whether the helpers may be used at all (``WASMLET_NATIVE=0`` says no; they assume 64-bit pointers)."""
    return os.environ.get(NATIVE_ENV, "1") != "0" and ctypes.sizeof(_vp) == 8


_loaded: FastPath | None = None
_tried = False


def fast_path() -> FastPath | None:
    """The helper, built if need be (once per process), or ``None``: then ctypes it is."""
    global _loaded, _tried
    if _tried:
        return _loaded
    _tried = True
    if not _enabled():
        return None
    source = _SOURCE.read_bytes()
    _loaded = _load(source, library_path(source), "the native request path", "WAGI requests use ctypes",
                    lambda path: FastPath(ctypes.CDLL(path)))
    return _loaded


# -- wasi:http host functions entered from wasmtime in C (``_hostcall.c``) ----------------------------------------

_HOSTCALL_SOURCE = Path(__file__).with_name("_hostcall.c")
_HOSTCALL_API = ("wasmtime_component_resource_any_to_host", "wasmtime_component_resource_host_rep",
                 "wasmtime_component_resource_host_delete", "wasmtime_component_resource_host_new",
                 "wasmtime_component_resource_host_to_any", "wasmtime_component_val_new", "wasm_byte_vec_new",
                 "wasmtime_error_new", "wasmtime_component_vallist_new_uninit")
# The value kinds, in the order of ``struct api``'s (wasmtime-py's constants, read when the library loads).
HOSTCALL_KINDS = ("BOOL", "U8", "U16", "U32", "U64", "S32", "S64", "STRING", "LIST", "RECORD", "TUPLE", "VARIANT",
                  "ENUM", "OPTION", "RESULT", "FLAGS", "RESOURCE")


class HostCallApi(ctypes.Structure):
    """``struct api`` of ``_hostcall.c``: wasmtime's functions, then the value kinds."""

    _fields_ = [*((name, _vp) for name in _HOSTCALL_API),
                *((f"k_{kind.lower()}", ctypes.c_uint8) for kind in HOSTCALL_KINDS)]


class HostFunc(ctypes.Structure):
    """``struct func`` of ``_hostcall.c``: one host function, its encoder and how its result is written."""

    _fields_ = [("call", ctypes.py_object), ("encode", ctypes.py_object), ("plan", ctypes.c_int32),
                ("type", ctypes.c_uint32)]


class HostDestructor(ctypes.Structure):
    """``struct destructor`` of ``_hostcall.c``."""

    _fields_ = [("destroy", ctypes.py_object)]


# HostFunc.plan: how the C callback writes the result (``_hostcall.c``'s enum).
PLAN_PYTHON, PLAN_OWN, PLAN_RESULT_OWN, PLAN_RESULT_UNIT, PLAN_OPTION_STRING, PLAN_BYTES, PLAN_RESULT_BYTES = range(7)


class HostCalls:
    """The built ``_hostcall.c``: the addresses of its two callbacks, and its one-time set-up."""

    def __init__(self, library: ctypes.PyDLL) -> None:
        self._library = library
        for name, struct in (("api", HostCallApi), ("func", HostFunc)):
            size = getattr(library, f"wasmlet_hostcall_{name}_size")
            size.restype = ctypes.c_size_t
            if size() != ctypes.sizeof(struct):
                raise OSError(f"_hostcall.c's struct {name} is {size()} bytes, Python's {ctypes.sizeof(struct)}")
        self.call_at = ctypes.cast(library.wasmlet_host_call, _vp).value
        self.drop_at = ctypes.cast(library.wasmlet_host_drop, _vp).value
        self.api = HostCallApi(*(ctypes.cast(ffi.dll[name], _vp) for name in _HOSTCALL_API),
                               *(int(getattr(ffi, f"WASMTIME_COMPONENT_{kind}").value) for kind in HOSTCALL_KINDS))
        self._init = library.wasmlet_hostcall_init
        self._init.restype = ctypes.c_int
        self._init.argtypes = [_vp, ctypes.py_object, ctypes.py_object, ctypes.py_object]
        self.ready = False

    def init(self, fail: object, to_exception: object, trap: type[BaseException]) -> None:
        """Hand the callbacks the Python they call on failure (once; ``_proxy._abi.use_host_calls``)."""
        if not self.ready:
            self._init(ctypes.addressof(self.api), fail, to_exception, trap)
            self.ready = True


_host_calls: HostCalls | None = None
_host_calls_tried = False


def host_calls() -> HostCalls | None:
    """The host-call helper, built if need be (once per process), or ``None``: then ctypes' callbacks it is.

    It includes ``Python.h``, so it is built against this interpreter's headers
    (Debian: ``python3-dev``) and named by its version too; without them, a
    compiler, or with ``WASMLET_NATIVE=0``, it is not built.
    """
    global _host_calls, _host_calls_tried
    if _host_calls_tried:
        return _host_calls
    _host_calls_tried = True
    if not _enabled():
        return None
    import sysconfig  # here: only a process that builds proxy linkers needs it

    include = sysconfig.get_paths().get("include", "")
    if not include or not (Path(include) / "Python.h").is_file():
        log.info("no Python.h for this interpreter (Debian: python3-dev): wasi:http host calls go through ctypes")
        return None
    source = _HOSTCALL_SOURCE.read_bytes()
    target = library_path(source + sys.version.encode() + include.encode(), name="hostcall")
    _host_calls = _load(source, target, "the wasi:http host-call helper", "host calls go through ctypes",
                        lambda path: HostCalls(ctypes.PyDLL(path)), ["-I", include])
    return _host_calls
