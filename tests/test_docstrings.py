"""The numpydoc Parameters sections say what the signatures do.

For every public estimator and function: each parameter of the signature is
documented, nothing undocumented is listed, and every ``default=`` written in
the docstring is the signature's default. The docstrings are the user's
reference (``help(USM)``), and a default changed in code but not in the text
is a silent lie.
"""

import ast
import dataclasses
import inspect
import re

import numpy as np
import pytest

import pse_nmf

_MODULES = [pse_nmf, pse_nmf.audio, pse_nmf.metrics, pse_nmf.datasets, pse_nmf.plotting, pse_nmf.decomposition]
_PUBLIC = list({id(obj): obj for obj in (
    getattr(mod, name) for mod in _MODULES for name in mod.__all__ if callable(getattr(mod, name, None))
)}.values())
try:  # the neural extra is optional
    import pse_nmf.neural as _neural

    _PUBLIC += [getattr(_neural, name) for name in _neural.__all__ if callable(getattr(_neural, name, None))]
except ImportError:
    pass
_PUBLIC = [obj for obj in _PUBLIC if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__doc__]

_HEADER = re.compile(r"^(?P<names>[*\w][\w, *]*?)\s*:\s*(?P<type>.*)$")


def _documented(obj):
    """Parameter name -> default text (or None) from the docstring's Parameters section.

    Dataclasses list their fields under Attributes.
    """
    doc = inspect.cleandoc(obj.__doc__.replace("\\\n", ""))  # numpydoc's backslash continuation (raw docstrings)
    section = "Attributes" if dataclasses.is_dataclass(obj) else "Parameters"
    match = re.search(rf"^{section}\n-+\n(?P<body>.*?)(?=^\S[^\n]*\n-+\n|\Z)", doc, flags=re.S | re.M)
    if match is None:
        return {}
    params = {}
    for line in match["body"].splitlines():
        if not line or line[0].isspace():
            continue  # description lines are indented
        head = _HEADER.match(line)
        if head is None:
            names, type_ = [line.strip()], ""
        else:
            names = [n.strip().lstrip("*") for n in head["names"].split(",")]
            type_ = head["type"]
        default = re.search(r"default\s*=\s*(.*)$", type_)
        values = [None] * len(names)
        if default is not None:
            parts = [p.strip() for p in default[1].split(",")] if len(names) > 1 else [default[1].strip()]
            values = parts if len(parts) == len(names) else [default[1].strip()] * len(names)
        params.update(zip(names, values))
    return params


def _signature(obj):
    if dataclasses.is_dataclass(obj):
        return {field.name: (field.default if field.default is not dataclasses.MISSING else inspect.Parameter.empty)
                for field in dataclasses.fields(obj)}
    function = obj.__init__ if inspect.isclass(obj) else obj
    sig = inspect.signature(function)
    return {name: p.default for name, p in sig.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _same(text, value):
    if text.startswith("np."):  # e.g. default=np.float32
        return getattr(np, text[3:], None) is value
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text == repr(value) or text == str(value)
    if isinstance(value, tuple) and isinstance(parsed, list):
        parsed = tuple(parsed)
    return parsed == value and type(parsed) in (type(value), int, float) or parsed is value


@pytest.mark.parametrize("obj", _PUBLIC, ids=lambda o: o.__name__)
def test_parameters_are_documented_with_their_defaults(obj):
    documented = _documented(obj)
    signature = _signature(obj)
    if not signature:
        return
    assert documented, f"{obj.__name__} has parameters but no Parameters section"
    missing = sorted(set(signature) - set(documented))
    extra = sorted(set(documented) - set(signature))
    assert not missing, f"{obj.__name__}: undocumented parameters {missing}"
    assert not extra, f"{obj.__name__}: documented but not in the signature {extra}"
    wrong = {name: (text, signature[name]) for name, text in documented.items()
             if text is not None and signature[name] is not inspect.Parameter.empty
             and not _same(text, signature[name])}
    assert not wrong, f"{obj.__name__}: docstring default != signature default (text, code): {wrong}"
