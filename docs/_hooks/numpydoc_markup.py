"""Griffe extension: the reST bits of numpydoc docstrings as Markdown the site renders.

The docstrings stay numpydoc/reST (``.. math::``, ``:math:``, ``.. [1]``,
``:class:``, ``:doi:``), as scikit-learn writes them; mkdocstrings renders
docstring text as Markdown, where those show raw. This extension rewrites a
copy of each docstring when griffe loads it, before it is parsed:

- ``.. math::`` blocks (content on the directive line or indented below it;
  blank lines separate equations) become ``$$ ... $$`` blocks and
  ``:math:`x``` becomes ``$x$``: pymdownx.arithmatex (generic mode) turns both
  into the ``arithmatex`` spans and divs that MathJax typesets;
- ``.. [1] text`` reference entries become list items ``[1] text`` and the
  citations ``[1]_`` become ``[1]``;
- ``:doi:`X``` becomes a link to https://doi.org/X;
- ``:class:`~a.b.C```, ``:func:``, ``:meth:``, ``:attr:``, ``:mod:``,
  ``:data:`` become code spans (the last dotted name with ``~``).

Loaded by mkdocstrings (``mkdocs.yml``, handler option ``extensions``); the
site's build test checks the result (``tests/test_docs.py``).
"""

from __future__ import annotations

import re

import griffe

_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<rest>.*)$")
_REFERENCE = re.compile(r"^(?P<indent>[ \t]*)\.\. \[(?P<label>[^\]]+)\][ \t]+(?P<rest>.*)$")
_MATH_ROLE = re.compile(r":math:`(?P<tex>[^`]+)`")
_DOI_ROLE = re.compile(r":doi:`(?P<doi>[^`]+)`")
_CODE_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|obj|exc):`(?P<tilde>~?)(?P<name>[^`]+)`")
_CITATION = re.compile(r"\[(?P<label>[0-9]+|#[\w-]*)\]_")


def _indent_of(line):
    return len(line) - len(line.lstrip())


def _math_blocks(lines):
    """Replace each ``.. math::`` directive by ``$$`` blocks, one per equation."""
    out = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        indent = match["indent"]
        body = [match["rest"]] if match["rest"].strip() else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or _indent_of(lines[i]) > len(indent)):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():  # the blank lines after the block stay outside it
            body.pop()
            i -= 1
        equations, current = [], []
        for line in body:
            if line.strip().startswith(":") and not current and not equations:
                continue  # directive options (:label:, :nowrap:)
            if line.strip():
                current.append(line.strip())
            elif current:
                equations.append(current)
                current = []
        if current:
            equations.append(current)
        for k, equation in enumerate(equations):
            if out and out[-1].strip():
                out.append("")
            out.extend([indent + "$$", *(indent + line for line in equation), indent + "$$"])
            if k < len(equations) - 1:
                out.append("")
    return out


def _references(lines):
    """``.. [1] text`` (continuation lines indented) -> one-line list items ``- [1] text``.

    The continuation lines are joined so that one starting with ``2011.``
    does not open a numbered list.
    """
    out = []
    i = 0
    while i < len(lines):
        match = _REFERENCE.match(lines[i])
        i += 1
        if match is None:
            out.append(lines[i - 1])
            continue
        words = [match["rest"].strip()]
        while i < len(lines) and lines[i].strip() and _indent_of(lines[i]) > len(match["indent"]) \
                and not _REFERENCE.match(lines[i]):
            words.append(lines[i].strip())
            i += 1
        out.append(f"{match['indent']}- \\[{match['label']}\\] {' '.join(words)}")
    return out


def rest_to_markdown(text):
    """Return numpydoc docstring ``text`` with its reST markup turned into arithmatex-ready Markdown."""
    if not any(marker in text for marker in (".. ", ":math:", ":doi:", "]_", ":`")):
        return text
    lines = _references(_math_blocks(text.splitlines()))
    text = "\n".join(lines)
    text = _MATH_ROLE.sub(lambda m: f"${m['tex'].strip()}$", text)
    text = _DOI_ROLE.sub(lambda m: f"[doi:{m['doi']}](https://doi.org/{m['doi']})", text)
    text = _CODE_ROLE.sub(lambda m: f"`{m['name'].rsplit('.', 1)[-1] if m['tilde'] else m['name']}`", text)
    return _CITATION.sub(lambda m: f"\\[{m['label']}\\]", text)


class NumpydocMarkup(griffe.Extension):
    """Rewrite every loaded object's docstring with :func:`rest_to_markdown`."""

    def on_instance(self, *, obj, **kwargs):  # noqa: D102 (griffe's hook)
        if obj.docstring is not None:
            obj.docstring.value = rest_to_markdown(obj.docstring.value)
