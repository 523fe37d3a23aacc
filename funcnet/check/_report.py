"""What :func:`funcnet.check.verify` returns: a row per dtype, argument leaf and
transformation (:class:`VerifyRow`), the report (:class:`VerifyReport`) and its table."""

from __future__ import annotations

from typing import NamedTuple

from funcnet.check._compare import Comparison
from funcnet.check._references import error_text
from funcnet.check._table import format_columns

TRANSFORMS = ("jit", "vmap", "grad")


class VerifyRow(NamedTuple):
    """One row of a :class:`VerifyReport`: one leaf of one argument in one dtype (or one
    transformation, or a row that raised).

    ``argument`` is the argument's name (``x``, ``params``; ``arg 2`` when the signature
    has none) and ``leaf`` the path inside it (``['W']``; ``""`` for an array argument).
    ``reference`` says what the rule was compared with: ``"reverse"`` or ``"forward"``
    autodiff of the plain forward, ``"none"`` (finite differences only), or the
    transformation (``"jit"``, ``"vmap"``, ``"grad"``). ``autodiff``, ``numerical`` and
    ``linearity`` are :class:`~funcnet.check._compare.Comparison` (or ``None`` where not
    computed). ``status`` is ``PASS``, ``FAIL``, ``ERROR`` or ``n/a``; ``note`` says why.
    A row that raised (``ERROR``, argument ``(all)``) keeps the exception in ``error``.
    """

    dtype: str
    argument: str
    leaf: str
    reference: str
    autodiff: Comparison | None
    numerical: Comparison | None
    linearity: Comparison | None
    status: str
    note: str
    error: BaseException | None = None

    @property
    def passed(self) -> bool:
        """True for PASS and n/a (a transformation that does not apply)."""
        return self.status in ("PASS", "n/a")

    def describe(self) -> str:
        """One sentence naming the argument, leaf, dtype, reference and what went wrong."""
        where = f"argument {self.argument}" + (f", leaf {self.leaf}" if self.leaf else "")
        if self.status == "ERROR":
            what = f"the {self.reference} check" if self.reference in TRANSFORMS else "the row"
            return f"{self.dtype}: {what} raised {self.note}"
        parts = []
        for label, c in (
            (f"{self.reference} autodiff", self.autodiff),
            ("float64 finite differences", self.numerical),
            ("linearity in the cotangent", self.linearity),
        ):
            if c is not None and not c.passed:
                parts.append(f"against {label}: {c.reason} (relative error {c.rel:.3g})")
        if self.reference in TRANSFORMS and self.autodiff is not None and not self.autodiff.passed:
            parts = [f"under {self.reference}: {self.note}"]
        return f"{self.dtype}: {where}: " + "; ".join(parts or [self.note])


def error_row(dtype: str, reference: str, e: BaseException) -> VerifyRow:
    """The ``ERROR`` row of a dtype row (``reference`` ``"-"``) or of a transformation
    check that raised ``e``: its message on one line, the exception kept."""
    return VerifyRow(dtype, "(all)", "", reference, None, None, None, "ERROR", error_text(e), e)


class VerifyReport(NamedTuple):
    """The result of :func:`verify`: ``name`` of the checked function and its rows.
    ``print`` it for the table; ``.passed`` is True when no row failed or raised."""

    name: str
    rows: tuple[VerifyRow, ...]

    @property
    def passed(self) -> bool:
        """True when there is at least one row and no row failed or raised."""
        return bool(self.rows) and all(r.passed for r in self.rows)

    @property
    def results(self) -> tuple[VerifyRow, ...]:
        """The rows (the name of earlier versions)."""
        return self.rows

    def failures(self) -> list[VerifyRow]:
        """The rows that failed or raised."""
        return [r for r in self.rows if not r.passed]

    def __str__(self) -> str:
        return format_report(self)


def _fmt(c: Comparison | None, field: str) -> str:
    if c is None:
        return "-"
    v = getattr(c, field)
    return "nan" if v != v else f"{v:.2e}"


def format_report(report: VerifyReport) -> str:
    """The table: one line per dtype, argument leaf and transformation."""
    header = [
        "dtype",
        "argument",
        "reference",
        "autodiff abs",
        "autodiff rel",
        "numeric abs",
        "numeric rel",
        "linear rel",
        "result",
        "note",
    ]
    rows = [
        [
            r.dtype,
            r.argument + r.leaf,
            r.reference,
            _fmt(r.autodiff, "abs"),
            _fmt(r.autodiff, "rel"),
            _fmt(r.numerical, "abs"),
            _fmt(r.numerical, "rel"),
            _fmt(r.linearity, "rel"),
            r.status,
            r.note,
        ]
        for r in report.rows
    ]
    return f"{report.name}\n" + format_columns(header, rows, "<<<>>>>><<")
