"""A griffe extension for the API reference: funcnet's docstrings cross-reference with
Sphinx roles (``:func:`load```, ``:mod:`funcnet.layers```), which Markdown would show
as written. Each role becomes inline code of its target (``~a.b.c`` shows ``c``, as
Sphinx does). Loaded by mkdocstrings (``mkdocs.yml``: ``extensions``)."""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|attr|meth|exc|obj|const):`(~?)([^`]+)`")


def _plain(match: re.Match) -> str:
    target = match[2]
    return f"`{target.rsplit('.', 1)[-1] if match[1] else target}`"


class SphinxRolesAsCode(griffe.Extension):
    """Rewrite Sphinx roles in every docstring as inline code."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_plain, obj.docstring.value)
