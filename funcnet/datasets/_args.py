"""Checks of the arguments of the public data set functions, run once per call.

Each raises ``TypeError`` for a value of the wrong type and ``ValueError`` for a wrong
value, naming the function (``where``), the argument, what was expected and what came.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from funcnet.datasets.specs import IdxSpec


def name(value: Any, where: str, arg: str, choices: Sequence[str]) -> str:
    """A name out of ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{where}: {arg} must be a str, one of {tuple(choices)}; got {value!r}")
    if value not in choices:
        raise ValueError(f"{where}: {arg} must be one of {tuple(choices)}, got {value!r}")
    return value


def flag(value: Any, where: str, arg: str) -> bool:
    """A bool (NumPy's included); a string such as ``"no"`` is not silently true."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {arg} must be True or False, got {value!r}")
    return bool(value)


def directory(value: Any, where: str, arg: str = "data_dir") -> Path | None:
    """None, or a folder given as a str or path."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(
            f"{where}: {arg} must be a str or os.PathLike folder, or None; "
            f"got {type(value).__name__}"
        )
    return Path(value).expanduser()


def callback(value: Any, where: str, arg: str = "progress") -> Callable | None:
    """None, or something to call."""
    if value is not None and not callable(value):
        raise TypeError(f"{where}: {arg} must be callable or None, got {type(value).__name__}")
    return value


def spec(value: Any, where: str) -> IdxSpec:
    """An :class:`~funcnet.datasets.specs.IdxSpec` (a name is looked up by the caller)."""
    if not isinstance(value, IdxSpec):
        raise TypeError(
            f"{where}: spec must be an IdxSpec (e.g. funcnet.datasets.SPECS['mnist']), "
            f"got {type(value).__name__}"
        )
    return value


def urls(value: Any, where: str) -> tuple[str, ...]:
    """A sequence of URL strings (a single string is not a list of one-letter URLs)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"{where}: urls must be a list of str, got {type(value).__name__}")
    if not all(isinstance(u, str) for u in value):
        raise TypeError(f"{where}: urls must be a list of str, got {list(value)!r}")
    return tuple(value)
