"""A client for the host's admin API (JSON over HTTP on loopback, bearer token), and the token file."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from .._errors import AdminError, ConfigError
from ._hosts import HostRecord, default_state_dir, running_hosts, runtime_dir

__all__ = ["TOKEN_FILE", "AdminClient", "AdminError", "connect", "default_token", "find_admin", "token_file_create"]

TOKEN_FILE = "admin-token"
DEFAULT_ADMIN = "http://127.0.0.1:9180"


class AdminClient:
    """Calls the admin API at ``base_url`` (e.g. ``http://127.0.0.1:9180``); every method returns parsed JSON."""

    def __init__(self, base_url: str, token: str | None, timeout: float = 120, token_source: str | None = None,
                 origin: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        #: Where the token came from, for people: said after a 401 so the real path is on screen.
        self.token_source = token_source
        #: Where the URL came from (a host record), said when the host cannot be reached.
        self.origin = origin
        headers = {"Accept": "application/json", "User-Agent": "wasmlet-admin-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the API -----------------------------------------------------------------------------

    def deploy(
        self,
        manifest_text: str,
        source: str = "manifest.yaml",
        canary_weight: int | None = None,
        canary_header: str | None = None,
    ) -> dict[str, Any]:
        """POST /v1/deploy with the manifest as ``application/yaml``."""
        params: dict[str, str] = {"source": source}
        if canary_weight is not None:
            params["canaryWeight"] = str(canary_weight)
        if canary_header is not None:
            params["canaryHeader"] = canary_header
        return self._object(
            "POST",
            "/v1/deploy",
            params=params,
            content=manifest_text.encode(),
            headers={"Content-Type": "application/yaml"},
        )

    def apps(self) -> list[Any]:
        """GET /v1/apps."""
        return self._list("GET", "/v1/apps")

    def app(self, name: str) -> dict[str, Any]:
        """GET /v1/apps/{name}."""
        return self._object("GET", _app_path(name))

    def rollback(self, name: str) -> dict[str, Any]:
        """POST /v1/apps/{name}/rollback."""
        return self._object("POST", _app_path(name, "rollback"))

    def promote(self, name: str) -> dict[str, Any]:
        """POST /v1/apps/{name}/promote."""
        return self._object("POST", _app_path(name, "promote"))

    def abort(self, name: str) -> dict[str, Any]:
        """POST /v1/apps/{name}/abort."""
        return self._object("POST", _app_path(name, "abort"))

    def delete(self, name: str) -> dict[str, Any]:
        """DELETE /v1/apps/{name}; ``{}`` if the server answers without a body (204)."""
        return self._object("DELETE", _app_path(name))

    def history(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """GET /v1/apps/{name}/versions?limit=N: the app's versions, newest first."""
        versions = self._list("GET", _app_path(name, "versions"), params={"limit": str(limit)})
        if not all(isinstance(v, dict) for v in versions):
            raise AdminError(0, f"{self.base_url}: unexpected answer to versions: expected a list of objects")
        return versions

    def logs(self, name: str, tail: int = 100) -> list[dict[str, Any]]:
        """GET /v1/apps/{name}/logs?tail=N."""
        entries = self._list("GET", _app_path(name, "logs"), params={"tail": str(tail)})
        if not all(isinstance(e, dict) for e in entries):
            raise AdminError(0, f"{self.base_url}: unexpected answer to logs: expected a list of objects")
        return entries

    # --- plumbing ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            where = f" ({self.origin})" if self.origin else ""
            raise AdminError(0, f"cannot reach the admin API at {self.base_url}{where}: {reason}") from exc
        if response.status_code >= 400:
            message = _error_message(response)
            if response.status_code == 401 and self.token_source:
                message += f" [{self.token_source}]"
            raise AdminError(response.status_code, message)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise AdminError(
                0, f"{self.base_url}: {method} {path} answered {response.status_code} with a body that is not JSON"
            ) from exc

    def _object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        value = self._request(method, path, **kwargs)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise AdminError(0, f"{self.base_url}: {method} {path}: expected a JSON object, got {type(value).__name__}")
        return value

    def _list(self, method: str, path: str, **kwargs: Any) -> list[Any]:
        value = self._request(method, path, **kwargs)
        if not isinstance(value, list):
            raise AdminError(0, f"{self.base_url}: {method} {path}: expected a JSON list, got {type(value).__name__}")
        return value


def _app_path(name: str, action: str | None = None) -> str:
    path = f"/v1/apps/{quote(name, safe='')}"
    return f"{path}/{action}" if action else path


def _error_message(response: httpx.Response) -> str:
    """The server's ``{"error": "..."}`` message, or the best text there is."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    text = response.text.strip()
    return text[:500] if text else response.reason_phrase or "error"


# --- finding the host ------------------------------------------------------------------------


def find_admin(admin_url: str | None = None, state_dir: Path | None = None) -> tuple[str, HostRecord | None]:
    """The admin URL the user means, and the running host's record if there is one.

    - ``admin_url`` given (``--admin``, ``$WASMLET_ADMIN``): that URL;
    - else ``state_dir`` given: the running host recorded with that state folder;
    - else the one running host recorded in ``runtime_dir()`` (an error if none or several).
    """
    record = None
    if admin_url is None:
        hosts = running_hosts()
        if state_dir is not None:
            wanted = state_dir.resolve()
            matching = [h for h in hosts if h.state_dir is not None and Path(h.state_dir) == wanted]
            if not matching:
                raise AdminError(0, f"no running wasmlet host uses the state folder {wanted} (hosts are recorded "
                                    f"in {runtime_dir()}); start one with `wasmlet serve --state-dir {state_dir}`, "
                                    "or pass --admin URL")
            record = matching[-1]
        elif len(hosts) == 1:
            record = hosts[0]
        elif not hosts:
            raise AdminError(0, f"no running wasmlet host found (none is recorded in {runtime_dir()}); start one "
                                "with `make run` or `wasmlet serve`, or pass --admin URL (or set WASMLET_ADMIN)")
        else:
            listing = "".join(f"\n  {h.describe()}" for h in hosts)
            raise AdminError(0, f"{len(hosts)} wasmlet hosts are running; choose one with --state-dir DIR or "
                                f"--admin URL:{listing}")
        return record.admin, record
    with contextlib.suppress(ConfigError):  # an explicit URL needs no record; a bad one is said elsewhere
        record = next((h for h in running_hosts() if h.admin == admin_url.rstrip("/")), None)
    return admin_url, record


def connect(admin_url: str | None = None, token: str | None = None, state_dir: Path | None = None,
            timeout: float = 120) -> AdminClient:
    """A client for the host the user means (``find_admin``), as the CLI's client commands find it.

    The token: ``token``, else the ``admin-token`` file of ``state_dir``, else the
    one the host recorded, else the default state folder's. Errors name what was
    looked at; after a 401 the client names the token file it read.
    """
    admin_url, record = find_admin(admin_url, state_dir)
    origin = f"recorded in {record.path}" if record is not None else None
    if token:
        return AdminClient(admin_url, token, timeout, "the token given by --token or $WASMLET_ADMIN_TOKEN", origin)
    if state_dir is not None:
        path = state_dir / TOKEN_FILE
    elif record is not None and record.token_file is not None:
        path = Path(record.token_file)
    else:
        path = default_state_dir() / TOKEN_FILE
    found = _read_token(path)
    source = (f"token read from {path.resolve()}" if found else
              f"no token sent: none in {path.resolve()}; pass the host's --state-dir DIR, or --token")
    return AdminClient(admin_url, found, timeout, source, origin)


# --- the token file ----------------------------------------------------------------------------


def _read_token(path: Path) -> str | None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the admin token file {path}: {exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"the admin token file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(
            f"the admin token file {path} is accessible to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            "run chmod 600 on it"
        )
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the admin token file {path}: {exc}") from exc
    return token or None


def default_token(state_dir: Path) -> str | None:
    """The admin token in ``state_dir/admin-token``, or None if there is none."""
    return _read_token(Path(state_dir) / TOKEN_FILE)


def token_file_create(state_dir: Path) -> str:
    """Return the token in ``state_dir/admin-token``, creating it (mode 0600) if it does not exist.

    Race-safe: the token is written in full to a private temporary file (``O_EXCL``) and then
    published with ``link(2)``, which fails if the name exists; so every concurrent caller ends
    up with the one token that won, and no reader ever sees a half-written file.
    """
    directory = Path(state_dir)
    path = directory / TOKEN_FILE
    existing = _read_token(path)
    if existing is not None:
        return existing
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the state directory {directory}: {exc}") from exc
    token = secrets.token_urlsafe(32)
    temporary = directory / f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(temporary, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            os.write(fd, f"{token}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # someone else won the race (or left an empty file): use theirs
        else:
            _fsync_directory(directory)
            return token
    except OSError as exc:
        raise ConfigError(f"cannot create the admin token file {path}: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    existing = _read_token(path)
    if existing is None:
        raise ConfigError(f"the admin token file {path} exists but is empty")
    return existing


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
