"""The worker side's HTTP server and admission, and the supervisor that runs its workers.

- serving: the pure ``Router``, the ASGI app, the runtime ``Host`` of a plan,
  worker processes and their ``Supervisor`` (shared socket, drain, restarts,
  memory watchdog, plan hand-over);
- admission, in front of the guests: token buckets per client and per app,
  the per-app concurrency limit and queue (``_ratelimit``), and the CPU
  circuit breaker (``_breaker``), bundled per app by ``_guard``.

It never imports the control side: a plan is all it is given. Names load on first
use (PEP 562), as in ``wasmlet.plan``: the supervisor, which needs ``Supervisor`` and
the settings, does not import the worker's ASGI app on its way to its first deploy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:  # the names below, for type checkers; at run time they load on first use
    from ._asgi import HEALTH_PATH, READY_PATH, WasmletApp
    from ._breaker import BreakerRegistry, BreakerSettings, CircuitBreaker, State, counts_as_failure
    from ._envelope import (
        ForwardReply,
        ForwardRequest,
        MalformedEnvelope,
        app_subject,
        connect_options,
        decode_request,
        decode_response,
        encode_request,
        encode_response,
        is_idempotent,
        valid_token,
    )
    from ._forward import DEADLINE_MARGIN, PROGRESS_EVERY, SILENCE, AppCaller, Forwarder, RemoteRoute
    from ._guard import AppGuard, Guards
    from ._host import App, Host
    from ._priority import check_priority
    from ._ratelimit import ConcurrencyLimiter, RateLimiter, client_key
    from ._router import Route, Router, normalise_path
    from ._settings import (
        METRICS_ENV,
        PLAN_ENV,
        THREADS_ENV,
        WATCHDOG_INTERVAL,
        WATCHDOG_MEMORY_GROWTH,
        WATCHDOG_WARMUP,
        WATCHDOG_WINDOW,
        ServeSettings,
        parse_forwarded_allow_ips,
        parse_listen,
    )
    from ._supervisor import Supervisor

# Each public name and the private module that defines it.
_WHERE = {
    "HEALTH_PATH": "._asgi",
    "READY_PATH": "._asgi",
    "WasmletApp": "._asgi",
    "BreakerRegistry": "._breaker",
    "BreakerSettings": "._breaker",
    "CircuitBreaker": "._breaker",
    "State": "._breaker",
    "counts_as_failure": "._breaker",
    "ForwardReply": "._envelope",
    "ForwardRequest": "._envelope",
    "MalformedEnvelope": "._envelope",
    "app_subject": "._envelope",
    "connect_options": "._envelope",
    "decode_request": "._envelope",
    "decode_response": "._envelope",
    "encode_request": "._envelope",
    "encode_response": "._envelope",
    "is_idempotent": "._envelope",
    "valid_token": "._envelope",
    "DEADLINE_MARGIN": "._forward",
    "PROGRESS_EVERY": "._forward",
    "SILENCE": "._forward",
    "AppCaller": "._forward",
    "Forwarder": "._forward",
    "RemoteRoute": "._forward",
    "AppGuard": "._guard",
    "Guards": "._guard",
    "App": "._host",
    "Host": "._host",
    "check_priority": "._priority",
    "ConcurrencyLimiter": "._ratelimit",
    "RateLimiter": "._ratelimit",
    "client_key": "._ratelimit",
    "Route": "._router",
    "Router": "._router",
    "normalise_path": "._router",
    "WATCHDOG_INTERVAL": "._settings",
    "WATCHDOG_MEMORY_GROWTH": "._settings",
    "WATCHDOG_WARMUP": "._settings",
    "WATCHDOG_WINDOW": "._settings",
    "ServeSettings": "._settings",
    "METRICS_ENV": "._settings",
    "PLAN_ENV": "._settings",
    "THREADS_ENV": "._settings",
    "parse_forwarded_allow_ips": "._settings",
    "parse_listen": "._settings",
    "Supervisor": "._supervisor",
}

#: The ASGI app factory, for servers that import it by name (granian).
ASGI_APP_FACTORY = "wasmlet.server._asgi:create_app"

__all__ = [
    "ASGI_APP_FACTORY",
    "DEADLINE_MARGIN",
    "HEALTH_PATH",
    "METRICS_ENV",
    "PLAN_ENV",
    "PROGRESS_EVERY",
    "READY_PATH",
    "SILENCE",
    "THREADS_ENV",
    "WATCHDOG_INTERVAL",
    "WATCHDOG_MEMORY_GROWTH",
    "WATCHDOG_WARMUP",
    "WATCHDOG_WINDOW",
    "App",
    "AppCaller",
    "AppGuard",
    "BreakerRegistry",
    "BreakerSettings",
    "CircuitBreaker",
    "ForwardReply",
    "ForwardRequest",
    "Forwarder",
    "ConcurrencyLimiter",
    "Guards",
    "Host",
    "MalformedEnvelope",
    "RateLimiter",
    "RemoteRoute",
    "Route",
    "Router",
    "ServeSettings",
    "State",
    "Supervisor",
    "WasmletApp",
    "app_subject",
    "check_priority",
    "client_key",
    "connect_options",
    "counts_as_failure",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "is_idempotent",
    "normalise_path",
    "parse_forwarded_allow_ips",
    "parse_listen",
    "valid_token",
]


__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
