"""In process: ``WagiHandler.handle`` on hello beside the bare floor, measured in the same run (issue 13).

The floor is the least a host can do per request with wasmtime-py: a fresh
``Store``, a ``WasiConfig`` with a stdout file, ``InstancePre.instantiate``
and the call to ``_start`` (``bench/inprocess.py``'s ``bare``). ``handle``
adds the CGI environment and argv, stderr, the store limits, the deadline
watch, reading and parsing the output and the stats. Loops alternate
(floor, handle, inline, floor, ...) for ``--rounds`` rounds so that drift on a
shared machine hits all alike; the table gives each round's p50 and the
median over rounds, and the ratio to the floor.

With the native request path (``guest/_native.py``, the default where a C
compiler is found), ``handle_inline`` is also timed with its C calls made one
by one through ctypes, as without it.

Then ``handle``'s steps one by one (a replica from the same C calls), to show
where the remaining microseconds go; and with ``--asgi``, the whole ASGI app
(``WasmletApp``: routing, admission, request id, CGI request, telemetry and the
guest; WAGI hello and the same answer as a C ``wasi:http`` component) over an
in-memory receive/send, no HTTP, with short guests inline and
with every guest on a worker thread: wall and CPU time (``process_time``, all
threads) per request.

    .venv/bin/python bench/hotpath.py [--iterations 3000] [--rounds 5] [--asgi]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import wasmtime

from _common import HELLO_WASM, ROOT, machine, summary_us, temp_cache
from inprocess import REQUEST, bare
from wasmlet.control import plan_for_module
from wasmlet.guest import WagiHandler, scratch_files
from wasmlet.guest import _capi as capi
from wasmlet.guest import _runner as runner
from wasmlet.guest import _watch as watch_mod
from wasmlet.guest._stdio import ScratchFiles
from wasmlet.guest._wagi import environment
from wasmlet.server import Host, WasmletApp


def timed(fn: Callable[[], object], iterations: int) -> list[float]:
    samples = []
    now = time.perf_counter
    for _ in range(iterations):
        start = now()
        fn()
        samples.append(now() - start)
    return samples


STAGES = ("environment + argv (Python)", "config: env + argv + stdout/stderr files",
          "store + limits + WASI + watch", "instantiate", "call _start", "store_delete", "read + parse + stats")


def open_files(files: ScratchFiles) -> None:
    config = capi.wasi_config_new()
    capi.wasi_config_set_stdout_file(config, files.stdout_bytes)
    capi.wasi_config_set_stderr_file(config, files.stderr_bytes)
    capi.wasi_config_delete(config)


def staged(handler: WagiHandler, clock: dict[str, list[float]]) -> None:
    """``WagiHandler._run``'s happy path, step by step, from the same calls."""
    now = time.perf_counter
    t0 = now()
    files = scratch_files()
    lane = files.lane
    env = environment(REQUEST, handler.route, handler.environment)
    argv = handler._argv.build(env, REQUEST.query)
    watch = watch_mod.Watch(time.monotonic() + 10, files, handler.limits.max_response, 1 << 20)
    t1 = now()
    config = capi.wasi_config_new()
    files = handler._configure(config, env, argv, b"", files)  # env + argv (cached name arrays) + both files
    t3 = now()
    store = capi.store_new(handler._engine_ptr, None, None)
    context = capi.store_context(store)
    capi.store_limiter(store, handler.limits.memory, -1, 2, 4, 1)
    capi.context_set_wasi(context, config)
    watch_id = next(watch_mod.watch_ids)
    watch_mod.watches[watch_id] = watch
    capi.store_epoch_deadline_callback(store, watch_mod.ON_DEADLINE, watch_id, None)  # no finalizer, as _calls
    capi.context_set_epoch_deadline(context, watch_mod.CHECK_TICKS)
    t4 = now()
    lane.trap.value = None
    capi.instance_pre_instantiate(handler._pre_ptr, context, lane.instance_at, lane.trap_at)
    t5 = now()
    lane.call(context, handler._entrypoint)
    t6 = now()
    capi.store_delete(store)
    watch_mod.watches.pop(watch_id, None)
    t7 = now()
    stats = runner.GuestStats(0, 0, 0, 0.0, 0)
    runner._outcome(handler.name, handler.limits, files, watch, None, stats)
    t8 = now()
    marks = (t0, t1, t3, t4, t5, t6, t7, t8)
    for stage, a, b in zip(STAGES, marks[:-1], marks[1:], strict=True):
        clock[stage].append(b - a)


HTTP_HELLO = ROOT / "examples" / "c-http" / "hello.wasm"  # the same answer as a wasi:http component
SCOPE = {"type": "http", "method": "GET", "path": "/", "raw_path": b"/", "query_string": b"",
         "headers": [(b"host", b"127.0.0.1:3000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
         "scheme": "http", "server": ("127.0.0.1", 3000), "client": ("127.0.0.1", 40000), "http_version": "1.1"}


async def asgi_loop(app: WasmletApp, iterations: int) -> tuple[float, float]:
    """us of wall and of CPU per request through ``app``."""
    message = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, object]:
        return message

    async def send(_: object) -> None:
        return None

    for _ in range(300):
        await app(SCOPE, receive, send)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        await app(SCOPE, receive, send)
    return (time.perf_counter() - wall) / iterations * 1e6, (time.process_time() - cpu) / iterations * 1e6


def asgi(iterations: int, rounds: int) -> None:
    import uvloop

    guests = {"WAGI hello": HELLO_WASM, "wasi:http hello (C)": HTTP_HELLO}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {
        (guest, mode): [] for guest in guests for mode in ("inline", "threads")}
    with temp_cache() as cache:
        plans = {guest: plan_for_module(path, cache_dir=cache, memoryLimit="16Mi") for guest, path in guests.items()}
        for _ in range(rounds):
            for guest, mode in results:
                app = WasmletApp(plans[guest], threads=16)
                app.inline.enabled = mode == "inline"
                app.startup()
                try:
                    results[guest, mode].append(uvloop.run(asgi_loop(app, iterations)))
                finally:
                    app.shutdown()
    print(f"\nWasmletApp, no HTTP, {iterations} requests x {rounds} rounds; us per request, median\n")
    print("| guest | guests run | wall | CPU (all threads) |\n|---|---|---:|---:|")
    for (guest, mode), runs in results.items():
        print(f"| {guest} | {mode} | {statistics.median(w for w, _ in runs):.1f} | "
              f"{statistics.median(c for _, c in runs):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--asgi", action="store_true", help="also the whole ASGI app, inline vs threads")
    args = parser.parse_args()
    print(machine())
    n = args.iterations
    with temp_cache() as cache:
        host = Host(plan_for_module(HELLO_WASM, cache_dir=cache, memoryLimit="16Mi"))
        host.start()
        try:
            handler = next(iter(host.apps.values())).handler
            assert isinstance(handler, WagiHandler)
            assert handler.handle(REQUEST).response.status == 200
            result, _ = handler.handle_inline(REQUEST)
            assert result is not None and result.response.status == 200
            contenders: dict[str, Callable[[], object]] = {
                "floor: store+WASI+instantiate+call": lambda: bare(handler),
                "WagiHandler.handle": lambda: handler.handle(REQUEST),
                "WagiHandler.handle_inline": lambda: handler.handle_inline(REQUEST),
            }
            fast = handler._fast
            if fast is not None:  # the C helper was built (_native): also the same calls through ctypes

                def one_by_one() -> None:
                    handler._fast = None
                    try:
                        handler.handle_inline(REQUEST)
                    finally:
                        handler._fast = fast

                contenders["handle_inline, C calls one by one (WASMLET_NATIVE=0)"] = one_by_one
            else:
                print("note: the native request path is off (WASMLET_NATIVE=0 or no C compiler)")
            for fn in contenders.values():
                for _ in range(300):
                    fn()
            gc.collect()
            p50s: dict[str, list[float]] = {name: [] for name in contenders}
            p99s: dict[str, list[float]] = {name: [] for name in contenders}
            for _ in range(args.rounds):
                for name, fn in contenders.items():
                    s = summary_us(timed(fn, n))
                    p50s[name].append(s["p50"])
                    p99s[name].append(s["p99"])
            clock: dict[str, list[float]] = {stage: [] for stage in STAGES}
            totals = timed(lambda: staged(handler, clock), n)
            files_alone = timed(lambda: open_files(scratch_files()), n)
        finally:
            host.close()
    floor = statistics.median(p50s["floor: store+WASI+instantiate+call"])
    print(f"\nhello, {n} calls per loop, {args.rounds} rounds alternating, one thread; microseconds\n")
    print("| what | p50 (median of rounds) | p50 per round | p99 (median) | / floor |")
    print("|---|---:|---|---:|---:|")
    for name in contenders:
        p50 = statistics.median(p50s[name])
        print(f"| {name} | {p50:.1f} | {', '.join(f'{x:.1f}' for x in p50s[name])} | "
              f"{statistics.median(p99s[name]):.1f} | {p50 / floor:.2f} |")
    print(f"\nsteps of handle (replica, p50 each; sum p50 {summary_us(totals)['p50']:.1f}):\n")
    print("| step | p50 | p99 |\n|---|---:|---:|")
    for stage in STAGES:
        s = summary_us(clock[stage])
        print(f"| {stage} | {s['p50']:.1f} | {s['p99']:.1f} |")
    s = summary_us(files_alone)
    print(f"| of which the stdout + stderr files alone (config new/delete around them) | {s['p50']:.1f} | "
          f"{s['p99']:.1f} |")
    if args.asgi:
        asgi(n, args.rounds)
    _ = wasmtime  # the floor is wasmtime-py's own object layer (inprocess.bare)


if __name__ == "__main__":
    main()
