"""Kubernetes resource quantities and durations, parsed to plain numbers.

Pure functions: no I/O, so they are unit-tested without a server. Both parse
text from manifests, so both bound what they return: a quantity fits a signed
64-bit field (``MAX_QUANTITY``), a duration is finite and at most
``MAX_DURATION``, and neither spends time on an absurd exponent. Every refusal
is a ``ValueError`` naming the accepted forms.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, Context, Decimal

__all__ = ["MAX_DURATION", "MAX_QUANTITY", "parse_duration", "parse_quantity"]

MAX_QUANTITY = 2**63 - 1  # what Kubernetes' int64 quantities hold, and more than any host has
MAX_DURATION = 365 * 24 * 3600.0  # a year: longer than any deadline, far inside clock arithmetic

# The suffixes of a Kubernetes quantity (k8s.io/apimachinery resource.Quantity):
# binary SI (Ki..Ei), decimal SI (k..E) and the decimal exponent form (1e6).
# Digits and exponents are bounded so that the arithmetic below is exact and
# cheap (an unbounded exponent overflows Decimal, an unbounded digit string
# makes a number of any size).
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(
    r"^\+?([0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|[eE][+-]?[0-9]{1,3})?$"
)
_EXACT = Context(prec=100, rounding=ROUND_CEILING)  # 61 digits times a 19-digit multiplier fit

_DURATION = re.compile(r"^([0-9]{1,20}(?:\.[0-9]{1,20})?)(ms|s|m|h)?$")
_DURATION_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}


def parse_quantity(text: str | int | float) -> int:
    """Return the number of bytes a quantity such as ``128Mi`` or ``1G`` stands for.

    Fractions are rounded up to a whole byte, as Kubernetes does for memory. A
    bare number is bytes: YAML and JSON read ``1e6`` and ``1.5e9`` as numbers,
    and a Kubernetes quantity takes them as such. Raises ``ValueError`` with
    the accepted forms when ``text`` is not one, or when it stands for more
    than ``MAX_QUANTITY``.
    """
    if isinstance(text, bool):
        raise ValueError("expected a quantity such as 128Mi, 64M or 1Gi")
    if isinstance(text, float):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"expected a non-negative quantity, got {text!r}")
        text = repr(text)  # the shortest decimal that reads back as the float: '1e-05', '1500000000.0'

    if isinstance(text, int):
        if text < 0:
            raise ValueError("expected a non-negative quantity")
        if text > MAX_QUANTITY:
            raise ValueError(f"expected a quantity of at most {MAX_QUANTITY} (8Ei - 1)")
        return text
    match = _QUANTITY.fullmatch(text.strip())
    if not match:
        raise ValueError(f"expected a quantity such as 128Mi, 64M or 1Gi, got {_short(text)}")
    number, suffix = match.group(1), match.group(2) or ""
    value = Decimal(number)
    if suffix in _BINARY:
        value = _EXACT.multiply(value, _BINARY[suffix])
    elif suffix in _DECIMAL:
        value = _EXACT.multiply(value, _DECIMAL[suffix])
    else:  # exponent form, e.g. 1e6
        value = value.scaleb(int(suffix[1:]), _EXACT)
    if value > MAX_QUANTITY:
        raise ValueError(f"expected a quantity of at most {MAX_QUANTITY} (8Ei - 1), got {_short(text)}")
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def parse_duration(text: str | int | float) -> float:
    """Return the seconds a duration such as ``500ms``, ``30s`` or ``2m`` stands for.

    A bare number is seconds. Raises ``ValueError`` naming the accepted forms,
    and for a duration that is not finite, not positive or over ``MAX_DURATION``.
    """
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 500ms, 30s or 2m")
    if isinstance(text, int):
        # Clamped first: float() of an int past 1e308 raises OverflowError.
        seconds = float(max(-1, min(text, int(MAX_DURATION) + 1)))
    elif isinstance(text, float):
        seconds = text
    else:
        match = _DURATION.fullmatch(text.strip())
        if not match:
            raise ValueError(f"expected a duration such as 500ms, 30s or 2m, got {_short(text)}")
        seconds = float(Decimal(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"])
    if math.isnan(seconds) or seconds <= 0:
        raise ValueError("expected a duration greater than zero")
    if seconds > MAX_DURATION:
        raise ValueError(f"expected a duration of at most a year ({MAX_DURATION:.0f}s)")
    return seconds


def _short(text: str) -> str:
    shown = repr(text[:40])  # cut after repr too: an escape such as \U0002ebe1 is ten characters
    return shown if len(shown) <= 40 else shown[:37] + "..."
