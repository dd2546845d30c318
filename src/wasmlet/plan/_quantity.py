"""Kubernetes resource quantities and durations, parsed to plain numbers.

Pure functions: no I/O, so they are unit-tested without a server.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["parse_duration", "parse_quantity"]

# The suffixes of a Kubernetes quantity (k8s.io/apimachinery resource.Quantity):
# binary SI (Ki..Ei), decimal SI (k..E) and the decimal exponent form (1e6).
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^([+]?[0-9]+(?:\.[0-9]*)?|[+]?\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$")
_DURATION_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}


def parse_quantity(text: str | int) -> int:
    """Return the number of bytes a quantity such as ``128Mi`` or ``1G`` stands for.

    Fractions are rounded up to a whole byte, as Kubernetes does for memory.
    Raises ``ValueError`` with the accepted forms when ``text`` is not one.
    """
    if isinstance(text, bool):
        raise ValueError("expected a quantity such as 128Mi, 64M or 1Gi")
    if isinstance(text, int):
        if text < 0:
            raise ValueError("expected a non-negative quantity")
        return text
    match = _QUANTITY.match(text.strip())
    if not match:
        raise ValueError(f"expected a quantity such as 128Mi, 64M or 1Gi, got {text!r}")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        value = Decimal(number)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"expected a number, got {number!r}") from exc
    if suffix in _BINARY:
        value *= _BINARY[suffix]
    elif suffix in _DECIMAL:
        value *= _DECIMAL[suffix]
    else:  # exponent form, e.g. 1e6
        value *= Decimal(10) ** int(suffix[1:])
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def parse_duration(text: str | int | float) -> float:
    """Return the seconds a duration such as ``500ms``, ``30s`` or ``2m`` stands for.

    A bare number is seconds. Raises ``ValueError`` naming the accepted forms.
    """
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 500ms, 30s or 2m")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _DURATION.match(text.strip())
        if not match:
            raise ValueError(f"expected a duration such as 500ms, 30s or 2m, got {text!r}")
        seconds = float(Decimal(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"])
    if seconds <= 0:
        raise ValueError("expected a duration greater than zero")
    return seconds
