"""A Griffe extension for the API reference: render zsaver's docstrings as Markdown.

zsaver's docstrings are written for ``help()`` and IDEs as much as for the site:
they cross-reference with Sphinx roles (``:meth:`save```) and open doctests with a
singular ``Example:`` header. Griffe's Google parser knows neither, so it would show
``:meth:save`` literally and turn ``>>>`` lines into Markdown block quotes. This
extension rewrites both when the site is built; the source stays as it is.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

# :meth:`save`, :class:`~zsaver.ZarrSaver`, :func:`to_config` ... -> `save`, `ZarrSaver`, `to_config`
_SPHINX_ROLE = re.compile(r":(?:meth|class|func|attr|mod|data|exc|obj):`(~?)([^`]+)`")
# A Google section header "Example:" alone on its line (any indentation) -> "Examples:"
_EXAMPLE_HEADER = re.compile(r"^(\s*)Example:\s*$", re.M)


def _code_span(role: re.Match[str]) -> str:
    short, target = role.group(1), role.group(2)
    # Sphinx's "~" prefix shows only the last component of the dotted name.
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def _markdown(text: str) -> str:
    return _EXAMPLE_HEADER.sub(r"\1Examples:", _SPHINX_ROLE.sub(_code_span, text))


class SphinxRolesAndExamples(griffe.Extension):
    """Rewrite Sphinx roles as code spans and ``Example:`` headers as ``Examples:``."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _markdown(obj.docstring.value)
