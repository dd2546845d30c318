"""The workers' scheduling priority: ``wasmlet serve --worker-priority N``, as nginx's ``worker_priority``.

Why it exists (measured, ``docs/benchmarks.md`` section 32): a worker sleeps
between the requests of a sparse stream, and each request wakes it. When the
machine's CPUs are shared with other busy processes (in the benchmark, the load
generator on the same two cores), a waking worker can wait behind them, and its
queue of requests with it. A lower nice value gives the workers a larger share
and lets them preempt on wake-up; it does not change what a request costs.
The supervisor and the zygote keep the priority they were started with.

On Linux the nice value belongs to a thread, not a process (setpriority(2),
BUGS), and a new thread takes its creator's. So a worker sets every thread it
has when it starts (``apply_priority``): the guest threads and the engine's
threads it starts later inherit the value. Guests run at that priority too;
their CPU deadline still bounds them.

Going below the nice value one has needs ``CAP_SYS_NICE`` or a ``RLIMIT_NICE``
soft limit of at least ``20 - N`` (setrlimit(2)); raising it is always allowed.
``check_priority`` tries the value on a short-lived thread of the supervisor's
own, so the answer is the kernel's (capabilities, limits, security modules), and
the supervisor's own threads are untouched.
"""

from __future__ import annotations

import os
import threading

from .._errors import ConfigError

__all__ = ["HIGHEST", "LOWEST", "apply_priority", "check_priority", "lowest_allowed", "priority_error"]

HIGHEST = -20  # the nice values setpriority(2) takes
LOWEST = 19

_CAP_SYS_NICE = 23  # linux/capability.h


def lowest_allowed(current: int, rlimit_nice: int, cap_sys_nice: bool) -> int:
    """The lowest nice value a thread at ``current`` may set (setpriority(2), setrlimit(2)).

    Any with ``CAP_SYS_NICE``; else down to ``20 - RLIMIT_NICE``'s soft limit,
    and never above the value it has (raising one's nice value is always
    allowed). ``rlimit_nice`` is ``resource.RLIM_INFINITY`` (-1, any value) or a count.
    """
    if cap_sys_nice or rlimit_nice < 0:
        return HIGHEST
    return max(HIGHEST, min(current, 20 - rlimit_nice))


def priority_error(wanted: int, current: int, rlimit_nice: int, cap_sys_nice: bool, reason: str) -> ConfigError:
    """The error for a ``--worker-priority`` the kernel refused, with what would allow it."""
    floor = lowest_allowed(current, rlimit_nice, cap_sys_nice)
    limit = "unlimited" if rlimit_nice < 0 else str(rlimit_nice)
    needed = 20 - wanted
    return ConfigError(
        f"--worker-priority {wanted}: this host may not set its workers' nice value to {wanted} ({reason}; "
        f"the lowest it may set is {floor}: nice {current} now, RLIMIT_NICE {limit}, "
        f"{'with' if cap_sys_nice else 'without'} CAP_SYS_NICE). Grant CAP_SYS_NICE (as root, or with "
        f"setcap; on Kubernetes, securityContext.capabilities.add: [SYS_NICE]), raise RLIMIT_NICE to {needed} "
        f"or more (limits.conf(5), item nice), or choose a value of {floor} or more")


def _limits() -> tuple[int, bool]:
    """This process's ``RLIMIT_NICE`` soft limit and whether it has ``CAP_SYS_NICE`` in its effective set."""
    import resource

    rlimit = resource.getrlimit(resource.RLIMIT_NICE)[0]
    cap = False
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    cap = bool(int(line.split()[1], 16) >> _CAP_SYS_NICE & 1)
    except OSError:
        pass
    return rlimit, cap


def check_priority(wanted: int) -> None:
    """``ConfigError`` unless this process's threads may take the nice value ``wanted``.

    Tried on a thread started for it, which then ends: on Linux the value is
    that thread's alone (setpriority(2)). Elsewhere the nice value is the
    process's, so only the limits are read, not tried.
    """
    if not hasattr(os, "setpriority"):
        raise ConfigError(f"--worker-priority {wanted}: this platform has no setpriority(2)")
    rlimit, cap = _limits()
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if not os.path.isdir("/proc/self/task"):
        if wanted < lowest_allowed(current, rlimit, cap):
            raise priority_error(wanted, current, rlimit, cap, "beyond its limits")
        return
    refused: list[OSError] = []

    def attempt() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), wanted)
        except OSError as exc:
            refused.append(exc)

    probe = threading.Thread(target=attempt, name="wasmlet-priority-check", daemon=True)
    probe.start()
    probe.join()
    if refused:
        raise priority_error(wanted, current, rlimit, cap, refused[0].strerror or str(refused[0]))


def apply_priority(nice: int) -> None:
    """Give every thread of this process the nice value ``nice`` (the threads it starts later inherit it).

    ``ConfigError`` if the kernel refuses (the supervisor checked first with
    ``check_priority``, so this is a change of limits in between).
    """
    try:
        tasks = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        tasks = [0]  # no /proc: the calling process, where the nice value is the process's
    for tid in tasks:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except ProcessLookupError:
            continue  # a thread that ended since the folder was read
        except OSError as exc:
            rlimit, cap = _limits()
            current = os.getpriority(os.PRIO_PROCESS, 0)
            raise priority_error(nice, current, rlimit, cap, exc.strerror or str(exc)) from exc
