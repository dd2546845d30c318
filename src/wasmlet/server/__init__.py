"""The worker side's HTTP server and admission, and the supervisor that runs its workers.

- serving: the pure ``Router``, the ASGI app, the runtime ``Host`` of a plan,
  worker processes and their ``Supervisor`` (shared socket, drain, restarts,
  memory watchdog, plan hand-over);
- admission, in front of the guests: token buckets per client and per app,
  the per-app concurrency limit and queue (``_ratelimit``), and the CPU
  circuit breaker (``_breaker``), bundled per app by ``_guard``.

It never imports the control side: a plan is all it is given.
"""

from ._asgi import HEALTH_PATH, METRICS_ENV, PLAN_ENV, READY_PATH, THREADS_ENV, WasmletApp
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
from ._ratelimit import ConcurrencyLimiter, RateLimiter, client_key
from ._router import Route, Router, normalise_path
from ._settings import (
    WATCHDOG_INTERVAL,
    WATCHDOG_MEMORY_GROWTH,
    WATCHDOG_WARMUP,
    WATCHDOG_WINDOW,
    ServeSettings,
    parse_forwarded_allow_ips,
    parse_listen,
)
from ._supervisor import Supervisor

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
