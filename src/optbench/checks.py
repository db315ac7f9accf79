"""Checks of user-given values that run settings, the optimizer registry and the profile loader share.

Numbers must be finite everywhere (an infinite learning rate or width passes ``> 0``); and PyYAML, which
follows YAML 1.1, reads ``1e-3`` as text (a float needs a decimal point and a signed exponent there), so
text that looks like a number where a number belongs is named with the spelling that works.
"""

from __future__ import annotations

import math
import re
from typing import Any

_NUMBER_AS_TEXT = re.compile(r"^[-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def first_non_finite(value: Any) -> float | None:
    """The first NaN or infinity in ``value`` (a number, or nested lists, tuples and dicts), or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for item in items:
        found = first_non_finite(item)
        if found is not None:
            return found
    return None


def check_finite(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` if ``value`` holds NaN or an infinity."""
    found = first_non_finite(value)
    if found is not None:
        raise ValueError(f"invalid {name} {value!r}: every number must be finite, got {found!r}")


def first_number_as_text(value: Any) -> str | None:
    """The first string in ``value`` (nested lists, tuples and dict values) that spells a number, or None."""
    if isinstance(value, str):
        return value if _NUMBER_AS_TEXT.match(value) else None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for item in items:
        found = first_number_as_text(item)
        if found is not None:
            return found
    return None


def yaml_number(text: str) -> str:
    """The number ``text`` spelt so that PyYAML reads a number: a decimal point and a signed exponent (``1.0e-3``)."""
    mantissa, _, exponent = f"{float(text.replace('_', '')):e}".partition("e")
    mantissa = mantissa.rstrip("0")
    return f"{mantissa}{'0' if mantissa.endswith('.') else ''}e{int(exponent):+d}"


def check_not_number_as_text(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` if ``value`` holds text that spells a number (YAML read it as text)."""
    found = first_number_as_text(value)
    if found is not None:
        raise ValueError(f"invalid {name} {value!r}: YAML reads {found} as text, not as a number; write it with a decimal "
                         f"point and a signed exponent, like {yaml_number(found)}")


def check_count(name: str, value, minimum: int) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer >= ``minimum`` (a bool is not)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"invalid {name} {value!r}: {name} must be an integer >= {minimum}")
