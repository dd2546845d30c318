"""Matching a request's host and path to a component: pure logic, no I/O.

Rules (close to Spin's):
- a route is a path prefix matched on segment boundaries: ``/api`` matches
  ``/api`` and ``/api/x`` but not ``/apix``; ``/`` matches everything;
- the longest matching prefix wins;
- a route bound to a host is preferred over an unbound one; ``*.example.com``
  matches any sub-domain; the request's port is ignored unless the route's
  host names one. Host comparison is case-insensitive (RFC 9110 section 4.2.3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["Route", "Router"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Route(Generic[T]):
    prefix: str
    host: str | None
    target: T


def _host_matches(pattern: str, host: str) -> bool:
    if ":" not in pattern:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def _path_matches(prefix: str, path: str) -> bool:
    if prefix == "/":
        return True
    return path == prefix or path.startswith(prefix + "/")


class Router(Generic[T]):
    def __init__(self, routes: Iterable[Route[T]]) -> None:
        # Host-bound first, then longest prefix first: the first match wins.
        self._routes = sorted(routes, key=lambda r: (r.host is None, -len(r.prefix)))

    def match(self, host: str | None, path: str) -> Route[T] | None:
        host = (host or "").lower()
        for route in self._routes:
            if route.host is not None and not _host_matches(route.host, host):
                continue
            if _path_matches(route.prefix, path):
                return route
        return None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._routes)
