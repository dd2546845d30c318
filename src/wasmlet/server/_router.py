"""Matching a request's host and path to a component: pure logic, no I/O.

Rules (close to Spin's):
- a route is a path prefix matched on segment boundaries: ``/api`` matches
  ``/api`` and ``/api/x`` but not ``/apix``; ``/`` matches everything;
- the longest matching prefix wins;
- a route bound to a host is preferred over an unbound one; ``*.example.com``
  matches any sub-domain; the request's port is ignored unless the route's
  host names one. Host comparison is case-insensitive (RFC 9110 section 4.2.3),
  and a fully qualified name's trailing dot is ignored (``example.com.``);
- the path matched is the normalised one (``normalise_path``), so
  ``/hello/../state`` reaches the app that ``/state`` reaches, never another.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["Route", "Router", "normalise_path"]

T = TypeVar("T")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalise_path(path: str) -> str | None:
    """The percent-decoded request path with dot-segments removed and slashes merged.

    ``None`` for a path no guest should be given: one that is not absolute
    (``*``), or holds a control character once decoded (``%00`` would cut a
    CGI variable short, so the guest would see another path than was routed).
    Dot-segments are removed as RFC 3986 section 5.2.4 says, on the decoded
    path, as nginx does: ``/a/..%2Fb`` is ``/b``, like ``/a/../b``; ``..``
    above the root stays at the root. Empty segments are merged (``//a`` is
    ``/a``), since a route never has one.
    """
    if not path.startswith("/") or _CONTROL.search(path):
        return None
    segments: list[str] = []
    parts = path.split("/")[1:]
    for part in parts:
        if part == "..":
            if segments:
                segments.pop()
        elif part not in ("", "."):
            segments.append(part)
    normal = "/" + "/".join(segments)
    # A trailing "/" (or a final "." or "..", which name a directory) is kept: "/a/" is not "/a".
    if segments and parts[-1] in ("", ".", ".."):
        normal += "/"
    return normal


def _normalise_host(host: str) -> str:
    host = host.lower()
    if host.startswith("["):  # an IPv6 literal, with or without a port
        return host
    name, colon, port = host.partition(":")
    return name.removesuffix(".") + colon + port


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
        """The route for ``host`` and an already normalised ``path`` (see ``normalise_path``)."""
        host = _normalise_host(host or "")
        for route in self._routes:
            if route.host is not None and not _host_matches(route.host, host):
                continue
            if _path_matches(route.prefix, path):
                return route
        return None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._routes)
