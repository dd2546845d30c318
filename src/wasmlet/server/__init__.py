"""The HTTP server: routing, the ASGI app, workers and their supervisor."""

from ._asgi import HEALTH_PATH, READY_PATH, WasmletApp
from ._host import App, Host
from ._router import Route, Router
from ._serve import serve
from ._settings import ServeSettings, parse_listen

__all__ = [
    "HEALTH_PATH",
    "READY_PATH",
    "App",
    "Host",
    "Route",
    "Router",
    "ServeSettings",
    "WasmletApp",
    "parse_listen",
    "serve",
]
