"""Registry credentials: docker's ``config.json`` and ``WWW-Authenticate`` challenges.

Credentials live where docker, podman (with ``--authfile``), oras and skopeo
look for them: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``,
under ``auths.<host>.auth`` as base64 ``user:password``. ``wasmlet login``
writes the same entry, so one login serves every tool. Credential helpers
(``credsStore``/``credHelpers``) run external programs and are not consulted;
a host known only to a helper is reported when its registry asks for auth.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from .._files import atomic_write

__all__ = [
    "Challenge",
    "Credentials",
    "docker_config_path",
    "helper_for",
    "load_credentials",
    "parse_challenge",
    "store_credentials",
]


@dataclasses.dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"

    def __repr__(self) -> str:  # never print a password in a traceback or a log
        return f"Credentials(username={self.username!r}, password=***)"


@dataclasses.dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-case: "basic" or "bearer"
    params: dict[str, str]


def docker_config_path() -> Path:
    explicit = os.environ.get("DOCKER_CONFIG")
    base = Path(explicit) if explicit else Path(os.path.expanduser("~")) / ".docker"
    return base / "config.json"


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the docker config: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def _key_host(key: str) -> str:
    """``https://host:5000/v1/`` and ``host:5000`` both name ``host:5000`` (docker accepts both spellings)."""
    key = key.strip()
    for prefix in ("https://", "http://"):
        if key.lower().startswith(prefix):
            key = key[len(prefix):]
    return key.split("/", 1)[0].lower()


def load_credentials(registry: str, path: Path | None = None) -> Credentials | None:
    """The stored credentials for ``registry`` (``host[:port]``), or None."""
    path = path or docker_config_path()
    auths = _read_config(path).get("auths")
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if _key_host(str(key)) != registry.lower() or not isinstance(entry, dict):
            continue
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"])
        encoded = entry.get("auth")
        if not isinstance(encoded, str) or not encoded:
            continue
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: auths.{key}.auth is not base64 of user:password") from exc
        user, sep, password = decoded.partition(":")
        if not sep:
            raise ConfigError(f"{path}: auths.{key}.auth is not base64 of user:password")
        return Credentials(user, password)
    return None


def helper_for(registry: str, path: Path | None = None) -> str | None:
    """The credential helper docker would use for ``registry``, if one is configured."""
    config = _read_config(path or docker_config_path())
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if _key_host(str(key)) == registry.lower() and isinstance(helper, str):
                return helper
    store = config.get("credsStore")
    return store if isinstance(store, str) and store else None


def store_credentials(registry: str, credentials: Credentials, path: Path | None = None) -> Path:
    """Write ``auths.<registry>.auth`` into the docker config, keeping every other key."""
    path = path or docker_config_path()
    config = _read_config(path)
    auths = config.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    # Drop other spellings of the same host so the new entry is the one read back.
    auths = {key: value for key, value in auths.items() if _key_host(str(key)) != registry.lower()}
    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode("ascii")
    auths[registry] = {"auth": token}
    config["auths"] = auths
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The file holds a password: 0600 from the start, then renamed into place.
        atomic_write(path, (json.dumps(config, indent="\t") + "\n").encode(), mode=0o600)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the docker config: {exc.strerror or exc}") from exc
    return path


# RFC 7235 auth-param: token "=" ( token / quoted-string ).
_PARAM = re.compile(r'\s*([A-Za-z0-9_.!#$%&\'*+^`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


def parse_challenge(header: str) -> Challenge | None:
    """Parse ``Bearer realm="...",service="...",scope="..."`` (or ``Basic realm=...``)."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        value = match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
    return Challenge(scheme.lower(), params)
