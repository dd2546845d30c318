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
from ._guard import AppGuard, Guards
from ._host import App, Host
from ._ratelimit import ConcurrencyLimiter, RateLimiter, client_key
from ._router import Route, Router, normalise_path
from ._settings import ServeSettings, parse_forwarded_allow_ips, parse_listen
from ._supervisor import Supervisor

#: The ASGI app factory, for servers that import it by name (granian).
ASGI_APP_FACTORY = "wasmlet.server._asgi:create_app"

__all__ = [
    "ASGI_APP_FACTORY",
    "HEALTH_PATH",
    "METRICS_ENV",
    "PLAN_ENV",
    "READY_PATH",
    "THREADS_ENV",
    "App",
    "AppGuard",
    "BreakerRegistry",
    "BreakerSettings",
    "CircuitBreaker",
    "ConcurrencyLimiter",
    "Guards",
    "Host",
    "RateLimiter",
    "Route",
    "Router",
    "ServeSettings",
    "State",
    "Supervisor",
    "WasmletApp",
    "client_key",
    "counts_as_failure",
    "normalise_path",
    "parse_forwarded_allow_ips",
    "parse_listen",
]
