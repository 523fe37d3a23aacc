"""Fixed-width text tables whose columns fit their longest entry."""

from __future__ import annotations

from collections.abc import Sequence


def format_columns(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """A table with a header, a rule and one line per row. ``align`` holds one character
    per column: ``<`` (left) or ``>`` (right). Every column is as wide as its longest
    entry, so long names never push the next column out of line."""
    if len(align) != len(header) or any(len(r) != len(header) for r in rows):
        raise ValueError(f"format_columns: every row needs {len(header)} entries")
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells):
        parts = [f"{str(c):{a}{w}}" for c, a, w in zip(cells, align, widths, strict=True)]
        return "  ".join(parts).rstrip()

    lines = [line(header)]
    lines.append("-" * len(lines[0]))
    lines += [line(r) for r in rows]
    return "\n".join(lines)
