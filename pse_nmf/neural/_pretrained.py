"""Pretrained models shipped inside the package: ``pretrained(name)`` and ``pretrained_models()``.

Each model is two files in ``pse_nmf/neural/pretrained/``: the model file
(``<name>.npz``, the library's npz + JSON format, no pickle) and its model
card (``<name>.json``: architecture, size and cost, training data and
licence, the command that trained it, dev-set figures, and the SHA-256 of
the model file). Nothing is downloaded: a model that is not in the package
is not available.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from .._persistence import ModelFileError, load_model

__all__ = ["pretrained", "pretrained_models", "pretrained_path"]


def _folder():
    return Path(str(resources.files("pse_nmf.neural") / "pretrained"))


def _card(path):
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"model card {str(path)!r} is unreadable: {exc}") from exc
    if not isinstance(card, dict) or "name" not in card or "sha256" not in card:
        raise ModelFileError(f"model card {str(path)!r} lacks its name or the model file's sha256")
    return card


def pretrained_models():
    """The pretrained models shipped in the package, with their model cards.

    Returns
    -------
    dict of str to dict
        Model name -> its model card (architecture, ``parameters``,
        ``macs_per_second``, training data and licence, dev-set figures...),
        sorted by name.

    Examples
    --------
    >>> from pse_nmf.neural import pretrained_models
    >>> "generalist" in pretrained_models()
    True
    """
    cards = {}
    for path in sorted(_folder().glob("*.json")):
        card = _card(path)
        cards[card["name"]] = card
    return cards


def pretrained_path(name="generalist"):
    """Path of a shipped model file (``<name>.npz``)."""
    cards = pretrained_models()
    if name not in cards:
        raise ValueError(f"no pretrained model {name!r}; the package ships {', '.join(cards) or 'none'}")
    return _folder() / cards[name]["file"]


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pretrained(name="generalist"):
    """A fitted estimator with the shipped weights, ready to denoise; ``fit`` fine-tunes it.

    Parameters
    ----------
    name : str, default="generalist"
        One of :func:`pretrained_models`.

    Returns
    -------
    estimator
        E.g. a fitted :class:`~pse_nmf.neural.CompactEnhancer` with
        ``warm_start=True``, so that ``fit(speech, noise)`` continues from
        the pretrained weights (fine-tuning) instead of starting anew.

    Raises
    ------
    ValueError
        Unknown name.
    ModelFileError
        The shipped file is missing, damaged, or does not match its card.

    Examples
    --------
    >>> from pse_nmf.datasets import load_example
    >>> from pse_nmf.neural import pretrained
    >>> model = pretrained("generalist")
    >>> x = load_example().speech["so762_9604"][0]
    >>> model.denoise(x).shape == x.shape
    True
    """
    path = pretrained_path(name)
    card = pretrained_models()[name]
    if not path.is_file():
        raise ModelFileError(f"pretrained model {name!r}: its file {str(path)!r} is missing from the package")
    if _sha256(path) != card["sha256"]:
        raise ModelFileError(f"pretrained model {name!r}: {str(path)!r} does not match its model card (sha256); "
                             "the package is damaged: reinstall it")
    model = load_model(path)
    if type(model).__name__ != card.get("estimator"):
        raise ModelFileError(f"pretrained model {name!r} holds a {type(model).__name__}, its card says "
                             f"{card.get('estimator')}")
    if "warm_start" in model.get_params():
        model.set_params(warm_start=True)
    return model
