"""Spin application variables, answered from the manifest's ``environment``. Pure.

A Spin variable name (``fermyon:spin/variables``) is lower-case snake case;
Spin checks it before asking any provider (spin-expressions ``Key::new``):
ASCII lower-case letters, digits and ``_``, starting with a letter, ending
with a letter or digit, never ``__``. Anything else is ``invalid-name``.

Spin's default provider reads the process environment as
``SPIN_VARIABLE_`` + the name upper-cased (``api_key`` ->
``SPIN_VARIABLE_API_KEY``). wasmlet reads the component's manifest
``environment`` instead (the host's own environment is never a guest's), in
this order:

1. ``SPIN_VARIABLE_API_KEY``: the name Spin users already set, so the same
   values work under ``spin up`` and here;
2. ``API_KEY``: the plain upper-case name, the usual manifest spelling.

Nothing else: no lower-case keys, no defaults from a ``spin.toml`` (wasmlet
does not read one). A name found in neither is ``undefined``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["PREFIX", "VariableError", "Variables", "check_name"]

PREFIX = "SPIN_VARIABLE_"
_UPPER = re.compile(r"^[A-Z][A-Z0-9_]*$")


class VariableError(Exception):
    """``kind`` is the WIT error case: ``invalid-name`` or ``undefined``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def check_name(name: str) -> None:
    """Raise ``VariableError("invalid-name")`` unless ``name`` is a valid Spin variable name."""
    reason = None
    if not name:
        reason = "must not be empty"
    elif bad := next((c for c in name if not (c.isascii() and (c.islower() or c.isdigit() or c == "_"))), None):
        reason = f"invalid character {bad!r}: variable names may contain only lower-case letters, numbers and '_'"
    elif not ("a" <= name[0] <= "z"):
        reason = "must start with a lower-case ASCII letter"
    elif not name[-1].isalnum():
        reason = "must end with a lower-case ASCII letter or digit"
    elif "__" in name:
        reason = "must not contain two underscores in a row"
    if reason is not None:
        raise VariableError("invalid-name", f"{name!r}: {reason}")


class Variables:
    """The variables of one component, from its ``environment`` pairs."""

    def __init__(self, environment: Iterable[tuple[str, str]]) -> None:
        self._env = dict(environment)

    def get(self, name: str) -> str:
        check_name(name)
        upper = name.upper()
        for key in (PREFIX + upper, upper):
            if key in self._env:
                return self._env[key]
        raise VariableError("undefined", f"no variable {name!r}: set {PREFIX}{upper} or {upper} in the "
                            "component's environment")

    def all(self) -> list[tuple[str, str]]:
        """Every variable defined, by its Spin name (``wasi:config/store.get-all``)."""
        out: dict[str, str] = {}
        for key, value in self._env.items():
            plain = key[len(PREFIX):] if key.startswith(PREFIX) else key
            if not _UPPER.match(plain):
                continue
            name = plain.lower()
            try:
                check_name(name)
            except VariableError:
                continue
            if key.startswith(PREFIX) or name not in out:  # the prefixed spelling wins, as in get()
                out[name] = value
        return sorted(out.items())
