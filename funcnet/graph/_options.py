"""Checks of the display options shared by the graph's members (table, to_dot, render).

Each check runs once per call in Python and raises ``TypeError`` for a wrong type or
``ValueError`` for a wrong value, naming the member, the argument, what was expected and
what came.
"""

from __future__ import annotations

import numbers
import re
from typing import Any

# float64 needs 17 significant digits to round-trip; more would print noise.
MAX_DIGITS = 17
RANKDIRS = ("LR", "TB")
_COLOR = re.compile(r"^(#[0-9A-Fa-f]{6}|#[0-9A-Fa-f]{8}|[A-Za-z][A-Za-z0-9 ]*)$")


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def check_digits(where: str, digits: Any) -> None:
    """``digits`` is None (exact values) or an int in [1, 17]."""
    if digits is None:
        return
    if not _is_int(digits):
        raise TypeError(
            f"{where}: digits must be an int in [1, {MAX_DIGITS}] or None (exact values), "
            f"got {type(digits).__name__} {digits!r}"
        )
    if not 1 <= digits <= MAX_DIGITS:
        raise ValueError(
            f"{where}: digits must lie in [1, {MAX_DIGITS}] (significant digits) or be None "
            f"(exact values), got {digits}"
        )


def check_max_values(where: str, max_values: Any) -> None:
    """``max_values`` is an int >= 0 (0: arrays by shape only)."""
    if not _is_int(max_values):
        raise TypeError(
            f"{where}: max_values must be an int >= 0, got {type(max_values).__name__} "
            f"{max_values!r}"
        )
    if max_values < 0:
        raise ValueError(
            f"{where}: max_values must be >= 0 (0 shows arrays by shape only), got {max_values}"
        )


def check_color(where: str, color: Any) -> None:
    """``color`` is a Graphviz colour name (``red3``) or ``#rrggbb``/``#rrggbbaa``."""
    if not isinstance(color, str):
        raise TypeError(
            f"{where}: backward_color must be a str such as 'red3' or '#cc0000', got "
            f"{type(color).__name__} {color!r}"
        )
    if not _COLOR.match(color):
        raise ValueError(
            f"{where}: backward_color must be a Graphviz colour name such as 'red3' or "
            f"'#rrggbb', got {color!r}"
        )


def check_rankdir(where: str, rankdir: Any) -> None:
    """``rankdir`` is ``"LR"`` (left to right, the book's way) or ``"TB"`` (top down)."""
    if not isinstance(rankdir, str):
        raise TypeError(
            f"{where}: rankdir must be 'LR' or 'TB', got {type(rankdir).__name__} {rankdir!r}"
        )
    if rankdir not in RANKDIRS:
        raise ValueError(
            f"{where}: rankdir must be 'LR' (left to right) or 'TB' (top to bottom), "
            f"got {rankdir!r}"
        )


def check_wrap(where: str, wrap: Any) -> None:
    """``wrap`` is None (one row per line) or an int >= 1 (numbers per line)."""
    if wrap is None:
        return
    if not _is_int(wrap):
        raise TypeError(
            f"{where}: wrap must be an int >= 1 (numbers per line) or None, got "
            f"{type(wrap).__name__} {wrap!r}"
        )
    if wrap < 1:
        raise ValueError(f"{where}: wrap must be >= 1 (numbers per line) or None, got {wrap}")
