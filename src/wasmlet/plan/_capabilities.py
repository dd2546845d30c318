"""Per-component capabilities: what a guest may import, read and reach.

Deny by default. A component without a ``capabilities`` block may import only
the WASI preview 1 functions a WAGI handler needs (``HANDLER_IMPORTS``), gets
no directory and no outbound network. Each grant widens exactly one thing:

- ``files``: a host directory mounted at a guest path, read-only unless
  ``writable: true``; the file-system imports are allowed only then
  (``FILES_READ_IMPORTS``, plus ``FILES_WRITE_IMPORTS`` for a writable mount);
- ``allowedOutboundHosts``: Spin's ``scheme://host[:port]`` patterns; the
  ``wasi_experimental_http`` imports are allowed only then;
- ``wasiImports``: further imports by name, for what neither covers
  (``clock_res_get``, ``sock_accept`` on a host that preopens sockets, or
  ``module::name`` of another host module).

The import list is a declaration check at deploy (a module that imports more
than its grants is refused with the list); the enforcement at run time is
what the runner gives the instance: no preopen unless ``files`` says so
(``wasmlet.guest``), and the egress policy in every outbound call.

Why each default import:

==========================================  =========================================================
``args_get``, ``args_sizes_get``            WAGI passes the route's argv
``environ_get``, ``environ_sizes_get``      CGI variables and the manifest's environment
``fd_read``                                 the request body on stdin
``fd_write``                                the response on stdout, logs on stderr
``fd_close``, ``fd_seek``, ``fd_fdstat_get`` wasi-libc's stdio: closing, ``lseek`` on stdout, ``isatty``
``fd_prestat_get``, ``fd_prestat_dir_name`` wasi-libc start-up lists preopens (none: EBADF at once)
``clock_time_get``                          time of day and monotonic time; the guest's deadline is the host's
``random_get``                              seeding hash tables and crypto; no host secret is exposed
``proc_exit``                               ``exit(status)``; a non-zero status is a 501
``poll_oneoff``                             ``sleep``/``nanosleep`` (clock subscriptions; no fds to poll)
``sched_yield``                             harmless; some runtimes call it in spin loops
==========================================  =========================================================

Left out and why: ``clock_res_get`` (not used by wasi-libc start-up; grant it
by name), ``proc_raise`` (deprecated), ``fd_fdstat_set_flags`` and every
``path_*``/file ``fd_*`` (file access), ``sock_*`` (preview 1 sockets only
act on preopened sockets, which wasmlet never preopens).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ._egress import AllowedHost, parse_allowed_hosts

__all__ = [
    "ALL_WASI_P1",
    "FILES_READ_IMPORTS",
    "FILES_WRITE_IMPORTS",
    "HANDLER_IMPORTS",
    "HTTP_IMPORTS",
    "WASI_HTTP",
    "WASI_P1",
    "Capabilities",
    "FileMount",
    "allowed_imports",
]

WASI_P1 = "wasi_snapshot_preview1"
WASI_HTTP = "wasi_experimental_http"

ALL_WASI_P1 = frozenset({
    "args_get", "args_sizes_get", "environ_get", "environ_sizes_get", "clock_res_get", "clock_time_get",
    "fd_advise", "fd_allocate", "fd_close", "fd_datasync", "fd_fdstat_get", "fd_fdstat_set_flags",
    "fd_fdstat_set_rights", "fd_filestat_get", "fd_filestat_set_size", "fd_filestat_set_times", "fd_pread",
    "fd_prestat_get", "fd_prestat_dir_name", "fd_pwrite", "fd_read", "fd_readdir", "fd_renumber", "fd_seek",
    "fd_sync", "fd_tell", "fd_write", "path_create_directory", "path_filestat_get", "path_filestat_set_times",
    "path_link", "path_open", "path_readlink", "path_remove_directory", "path_rename", "path_symlink",
    "path_unlink_file", "poll_oneoff", "proc_exit", "proc_raise", "sched_yield", "random_get", "sock_accept",
    "sock_recv", "sock_send", "sock_shutdown",
})

HANDLER_IMPORTS = frozenset({
    "args_get", "args_sizes_get", "environ_get", "environ_sizes_get",
    "fd_read", "fd_write", "fd_close", "fd_seek", "fd_fdstat_get", "fd_prestat_get", "fd_prestat_dir_name",
    "clock_time_get", "random_get", "proc_exit", "poll_oneoff", "sched_yield",
})

FILES_READ_IMPORTS = frozenset({
    "path_open", "path_filestat_get", "path_readlink", "fd_readdir", "fd_filestat_get", "fd_pread", "fd_tell",
    "fd_advise", "fd_fdstat_set_flags", "fd_fdstat_set_rights", "fd_renumber",
})

FILES_WRITE_IMPORTS = frozenset({
    "fd_pwrite", "fd_allocate", "fd_datasync", "fd_sync", "fd_filestat_set_size", "fd_filestat_set_times",
    "path_create_directory", "path_filestat_set_times", "path_link", "path_remove_directory", "path_rename",
    "path_symlink", "path_unlink_file",
})

HTTP_IMPORTS = frozenset({"req", "close", "header_get", "headers_get_all", "body_read"})


class FileMount(BaseModel):
    """``{source: host dir, destination: guest path, writable: false}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1)
    destination: str = "/"
    writable: bool = False

    @field_validator("destination")
    @classmethod
    def _destination(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("expected an absolute guest path such as / or /assets")
        if any(part in (".", "..") for part in value.split("/")) or "//" in value or "\0" in value:
            raise ValueError("expected a normalised guest path (no '.', '..' or empty segments)")
        return value.rstrip("/") or "/"


class Capabilities(BaseModel):
    """The ``capabilities`` block of a component's properties (all fields optional).

    ::

        capabilities:
          files:
            - {source: ./static, destination: /static}          # read-only
            - {source: /var/lib/app, destination: /data, writable: true}
          allowedOutboundHosts:
            - https://*.example.com:443
            - postgres://db.internal:5432
          wasiImports: [clock_res_get]
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)

    files: tuple[FileMount, ...] = ()
    allowed_outbound_hosts: tuple[str, ...] = Field(default=(), alias="allowedOutboundHosts")
    wasi_imports: tuple[str, ...] = Field(default=(), alias="wasiImports")

    @field_validator("allowed_outbound_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_allowed_hosts(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("wasi_imports")
    @classmethod
    def _imports(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            module, _, name = entry.rpartition("::")
            if not name or (module == "" and "::" in entry):
                raise ValueError(f"{entry!r}: expected a WASI preview 1 function name or MODULE::NAME")
            if (module or WASI_P1) == WASI_P1 and name != "*" and name not in ALL_WASI_P1:
                raise ValueError(f"{entry!r}: not a WASI preview 1 function")
        return value

    @model_validator(mode="after")
    def _unique_destinations(self) -> Capabilities:
        seen: set[str] = set()
        for mount in self.files:
            if mount.destination in seen:
                raise ValueError(f"two files entries mount at {mount.destination!r}")
            seen.add(mount.destination)
        return self

    @property
    def outbound(self) -> tuple[AllowedHost, ...]:
        """The parsed ``allowedOutboundHosts``, for ``_egress`` and ``_wasi_http``."""
        return parse_allowed_hosts(self.allowed_outbound_hosts)

    def to_plain(self) -> dict[str, Any]:
        """JSON-able form (camelCase), for a plan; ``Capabilities.model_validate`` reads it back."""
        return self.model_dump(by_alias=True)


def allowed_imports(caps: Capabilities) -> frozenset[tuple[str, str]]:
    """The ``(module, name)`` imports ``caps`` allows; a name ``*`` allows a whole module."""
    names = set(HANDLER_IMPORTS)
    if caps.files:
        names |= FILES_READ_IMPORTS
    if any(m.writable for m in caps.files):
        names |= FILES_WRITE_IMPORTS
    allowed = {(WASI_P1, n) for n in names}
    if caps.allowed_outbound_hosts:
        allowed |= {(WASI_HTTP, n) for n in HTTP_IMPORTS}
    for entry in caps.wasi_imports:
        module, _, name = entry.rpartition("::")
        allowed.add((module or WASI_P1, name))
    return frozenset(allowed)
