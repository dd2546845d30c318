"""Registry credentials: docker's ``config.json``, its credential helpers, ``WWW-Authenticate`` challenges.

Credentials live where docker, podman (with ``--authfile``), oras and skopeo
look for them: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``.
For a registry, in this order:

1. ``credHelpers.<host>``: a per-registry helper program;
2. ``auths.<host>.auth`` (base64 ``user:password``), or ``username`` and
   ``password``: what ``wasmlet login`` writes, so one login serves every tool;
3. ``credsStore``: the helper for every other registry (Docker Desktop sets
   ``desktop``; ``osxkeychain``, ``wincred``, ``pass``, ``secretservice``).

A helper is the program ``docker-credential-<name>`` on ``PATH``, run as
docker runs it (docker-credential-helpers' protocol): ``get``, with the
server address on stdin, answers ``{"ServerURL", "Username", "Secret"}`` as
JSON, or exits non-zero saying "credentials not found". It is given
``HELPER_TIMEOUT`` seconds. Docker Hub's server address is
``https://index.docker.io/v1/``, whatever name the reference gave it.

Unlike docker, an ``auths`` entry with credentials is used even when
``credsStore`` is set: docker leaves such entries empty when it uses a store,
so one with credentials was written by a tool that does not (``wasmlet
login``), on purpose.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from .._errors import ConfigError, RegistryAuthError
from .._files import atomic_write
from ._reference import DOCKER_HUB_NAMES, DOCKER_HUB_SERVER, is_docker_hub

__all__ = [
    "HELPER_TIMEOUT",
    "Challenge",
    "Credentials",
    "docker_config_path",
    "helper_for",
    "load_credentials",
    "parse_challenge",
    "run_helper",
    "server_address",
    "store_credentials",
]

#: Seconds a ``docker-credential-*`` helper may take to answer ``get``.
HELPER_TIMEOUT = 30.0
# A helper's name becomes part of a program name: no path separators, no option-looking names.
_HELPER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HELPER_OUTPUT = 64 << 10  # bytes of a helper's answer looked at (an answer is ~200 bytes)


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


def _names(key: str, registry: str) -> bool:
    """The config key ``key`` names ``registry`` (Docker Hub under any of its names)."""
    host = _key_host(key)
    return host in DOCKER_HUB_NAMES if is_docker_hub(registry) else host == registry.lower()


def server_address(registry: str) -> str:
    """What a credential helper is asked for: ``https://index.docker.io/v1/`` for Docker Hub, else host[:port]."""
    return DOCKER_HUB_SERVER if is_docker_hub(registry) else registry.lower()


def load_credentials(registry: str, path: Path | None = None) -> Credentials | None:
    """The credentials for ``registry`` (``host[:port]``) from the docker config and its helpers, or None.

    Raises ``RegistryAuthError`` when a configured helper is missing or fails, ``ConfigError`` for a bad config.
    """
    path = path or docker_config_path()
    config = _read_config(path)
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if _names(str(key), registry) and isinstance(helper, str) and helper:
                found = run_helper(helper, server_address(registry), f"{path}: credHelpers.{key}")
                if found is not None:
                    return found
    inline = _inline_credentials(config, registry, path)
    if inline is not None:
        return inline
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return run_helper(store, server_address(registry), f"{path}: credsStore")
    return None


def _inline_credentials(config: dict[str, Any], registry: str, path: Path) -> Credentials | None:
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if not _names(str(key), registry) or not isinstance(entry, dict):
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
            if _names(str(key), registry) and isinstance(helper, str) and helper:
                return helper
    store = config.get("credsStore")
    return store if isinstance(store, str) and store else None


def run_helper(name: str, server: str, configured: str) -> Credentials | None:
    """Ask ``docker-credential-<name>`` for ``server``'s credentials: None if it has none.

    ``configured`` says where the helper was named, for messages. Raises
    ``RegistryAuthError`` if the helper is not installed, fails, answers
    something else than the protocol's JSON, or takes longer than ``HELPER_TIMEOUT``.
    """
    if not _HELPER_NAME.match(name):
        raise RegistryAuthError(f"{configured}: {name!r} is not a credential helper name "
                                "(expected letters, digits, '.', '_' or '-', as in 'desktop')")
    program = f"docker-credential-{name}"
    executable = shutil.which(program)
    if executable is None:
        raise RegistryAuthError(
            f"{configured} names the credential helper {name!r}, but {program} is not on PATH: install it, "
            f"or remove the entry (then `wasmlet login {_login_host(server)}` keeps credentials in the file)"
        )
    # Its own session, so a helper that hangs is killed with whatever it started.
    with subprocess.Popen([executable, "get"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, start_new_session=True) as process:
        try:
            out, err = process.communicate(server.encode(), timeout=HELPER_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise RegistryAuthError(
                f"{program} get did not answer within {HELPER_TIMEOUT:g} s (asked for {server}; "
                f"named by {configured})"
            ) from None
    if process.returncode != 0:
        said = (out or err)[:_HELPER_OUTPUT].decode("utf-8", "replace").strip()
        # docker-credential-helpers' ErrCredentialsNotFound: the helper has nothing for this server.
        if "credentials not found" in said.lower():
            return None
        raise RegistryAuthError(f"{program} get failed for {server} (exit status {process.returncode}): "
                                f"{said.splitlines()[0][:200] if said else 'no message'}")
    return _helper_answer(out, program, server)


def _helper_answer(out: bytes, program: str, server: str) -> Credentials:
    # Never quote the answer in an error: it holds the secret.
    try:
        answer = json.loads(out[:_HELPER_OUTPUT].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RegistryAuthError(f"{program} get answered something that is not JSON for {server}") from exc
    username = answer.get("Username") if isinstance(answer, dict) else None
    secret = answer.get("Secret") if isinstance(answer, dict) else None
    if not isinstance(username, str) or not isinstance(secret, str):
        raise RegistryAuthError(f"{program} get answered for {server} without string Username and Secret fields")
    if username == "<token>":
        # An identity token is exchanged with OAuth2 (the token spec's grant_type=refresh_token), not sent.
        raise RegistryAuthError(f"{program} holds an identity token for {server}, which wasmlet cannot use yet; "
                                f"run: wasmlet login {_login_host(server)} -u USER --password-stdin")
    return Credentials(username, secret)


def _login_host(server: str) -> str:
    return "docker.io" if server == DOCKER_HUB_SERVER else server


def store_credentials(registry: str, credentials: Credentials, path: Path | None = None) -> Path:
    """Write ``auths.<registry>.auth`` into the docker config, keeping every other key."""
    path = path or docker_config_path()
    config = _read_config(path)
    auths = config.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    # Drop other spellings of the same host so the new entry is the one read back.
    auths = {key: value for key, value in auths.items() if not _names(str(key), registry)}
    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode("ascii")
    auths[DOCKER_HUB_SERVER if is_docker_hub(registry) else registry] = {"auth": token}
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
