"""Saving and loading fitted estimators without pickle.

Format (``format_version`` 1)
-----------------------------
A model file is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays), read with
``allow_pickle=False`` so that loading never executes code. It holds:

``__meta__``
    UTF-8 JSON stored as a uint8 array::

        {"format": "pse_nmf.model", "format_version": 1,
         "library_version": "0.1.0", "estimator": "SemiSupervisedNMF",
         "params": {...JSON-able constructor arguments...},
         "array_params": ["fixed_components", ...],
         "attributes": {"n_iter_": 87, ...},
         "arrays": ["components_", ...],
         "audio": {"sr": 16000, "n_fft": 1024, "hop_length": 256, "window": "hann"}}

``param:<name>``
    Constructor arguments that are arrays.
``attr:<name>``
    Fitted array attributes (``components_``, ...).
``<prefix>:<name>`` (listed in the metadata's ``"extra_arrays"``)
    Further arrays an estimator saves through the ``_extra_arrays()`` hook,
    e.g. a neural network's weights as ``weight:<name>`` (its state_dict,
    one array per tensor). Files without ``"extra_arrays"`` have none.

``<param>/<i>/<key>`` (described in the metadata's ``"nested"``)
    Constructor arguments that are fitted estimators (e.g. the members of
    :class:`~pse_nmf.EnsembleEnhancer`): member ``i`` of parameter
    ``<param>`` is stored as its own model file would be, every key of it
    (its ``__meta__`` JSON included) prefixed with ``<param>/<i>/``, so
    nesting recurses. ``"nested"`` maps each such parameter to
    ``{"kind": "estimator" | "named", "names": [...], "frozen": [...]}``:
    one estimator, or a list of ``(name, estimator)`` pairs; ``frozen``
    marks members saved from inside a :class:`sklearn.frozen.FrozenEstimator`
    (re-wrapped on load). Files without ``"nested"`` have none.

``audio`` is present for estimators that work on waveforms and must agree
with ``params``; a file whose settings disagree, or whose arrays do not fit
those settings, is refused on load with a clear error.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

import numpy as np

from ._version import __version__

__all__ = ["ModelIOMixin", "load_model", "register_estimator", "ModelFileError"]

FORMAT = "pse_nmf.model"
FORMAT_VERSION = 1
_META_KEY = "__meta__"
_REGISTRY: dict[str, type] = {}
# Estimators registered by optional subpackages that `import pse_nmf` does not import (they need
# extra dependencies): load_model imports the subpackage, from this fixed table only, on first use.
_OPTIONAL_ESTIMATORS = {
    "CompactEnhancer": "pse_nmf.neural",
    "GRUEnhancer": "pse_nmf.neural",
    "DAEEnhancer": "pse_nmf.neural",
    "TCNEnhancer": "pse_nmf.neural",
    "AdaptiveDAE": "pse_nmf.neural",
    "SparseMixtureOfExperts": "pse_nmf.neural",
    "SpeakerEmbedding": "pse_nmf.neural",
    "AutoencoderSelector": "pse_nmf.neural",
    "SNRPredictor": "pse_nmf.neural",
    "SpeakerExtractor": "pse_nmf.neural",
}
_RESERVED_PREFIXES = ("param:", "attr:")


class ModelFileError(ValueError):
    """A model file cannot be read: wrong kind, damaged, or inconsistent."""


def check_dictionary(D, name, shape=None):
    """Raise :class:`ModelFileError` unless ``D`` is a usable NMF dictionary.

    A usable dictionary is a float32 or float64 array (complex, integer and
    boolean arrays are refused: the updates and masks need real floats), of
    ``shape`` when given, finite and non-negative, and non-degenerate: every
    atom (row) has a positive entry. Every dictionary pse_nmf fits has
    unit-norm atoms, so an all-zero atom means a damaged or hand-made file;
    an all-zero dictionary would enhance every input to silence.

    Parameters
    ----------
    D : ndarray of shape (n_atoms, n_bins)
    name : str
        The attribute's name, for the message.
    shape : tuple of int or None
        The shape the model's settings imply.
    """
    D = np.asarray(D)
    if D.dtype.kind == "c":
        raise ModelFileError(f"{name} is complex ({D.dtype}); a dictionary holds real magnitudes")
    if D.dtype not in (np.float32, np.float64):
        raise ModelFileError(f"{name} has dtype {D.dtype}; a dictionary is float32 or float64")
    if D.ndim != 2 or (shape is not None and D.shape != tuple(shape)):
        expected = f"the settings say {tuple(shape)}" if shape is not None else "(n_atoms, n_bins) is expected"
        raise ModelFileError(f"{name} has shape {D.shape}, but {expected}")
    if not (np.all(np.isfinite(D)) and np.all(D >= 0)):
        raise ModelFileError(f"{name} holds negative or non-finite values")
    zero = np.flatnonzero(~np.any(D > 0, axis=1))
    if zero.size and zero.size == D.shape[0]:
        raise ModelFileError(f"every atom of {name} is all zeros: a degenerate dictionary, which would enhance "
                             "every input to silence")
    if zero.size:
        raise ModelFileError(f"{name}: atom {zero[0]} is all zeros ({zero.size} of {D.shape[0]} atoms); fitted "
                             "dictionaries have unit-norm atoms")


def _check_array_dtype(where, name, arr):
    """Model arrays are real numbers: a complex or non-numeric array is damage, refused by name."""
    if arr.dtype.kind == "c":
        raise ModelFileError(f"{where!r}: {name} is complex ({arr.dtype}); model arrays are real")
    if arr.dtype.kind not in "biuf":
        raise ModelFileError(f"{where!r}: {name} has dtype {arr.dtype}; model arrays are numeric")


def register_estimator(cls):
    """Class decorator: make ``cls`` loadable by :func:`load_model` under its name."""
    _REGISTRY[cls.__name__] = cls
    return cls


def _json_param(name, value):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)) and all(
        v is None or isinstance(v, (bool, str, numbers.Real)) for v in value
    ):
        return [_json_param(name, v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value) and all(
        v is None or isinstance(v, (bool, str, numbers.Real)) for v in value.values()
    ):
        # a flat mapping of names to scalars (e.g. USM's speaker_sparsity): a JSON object
        return {k: _json_param(name, v) for k, v in value.items()}
    if isinstance(value, np.random.RandomState):
        # the generator's state is not a setting; the fitted arrays are what counts
        return None
    raise TypeError(f"parameter {name}={value!r} cannot be saved in a pse_nmf model file")


class ModelIOMixin:
    """``save`` for estimators; subclasses list what they save.

    Subclasses set ``_fitted_arrays`` (names of ndarray attributes),
    ``_fitted_scalars`` (names of int/float/str attributes) and, if they work
    on waveforms, have ``sr``, ``n_fft`` and ``hop_length`` parameters.
    """

    _fitted_arrays: tuple = ()
    _fitted_scalars: tuple = ()

    def _audio_settings(self):
        params = self.get_params(deep=False)
        if {"sr", "n_fft", "hop_length"} <= params.keys():
            return {"sr": int(params["sr"]), "n_fft": int(params["n_fft"]),
                    "hop_length": int(params["hop_length"]), "window": "hann"}
        return None

    def _check_loaded(self):
        """Hook: raise ModelFileError if the loaded arrays do not fit the settings."""

    def _extra_arrays(self):
        """Hook: further arrays to save, as a dict ``"<prefix>:<name>" -> ndarray``.

        Keys must contain a ``":"`` and must not start with ``"param:"`` or
        ``"attr:"``. They are listed in the metadata (``"extra_arrays"``) and
        handed back to :meth:`_load_extra` on load.
        """
        return {}

    def _load_extra(self, arrays):
        """Hook: restore what :meth:`_extra_arrays` saved (called before ``_check_loaded``).

        ``arrays`` is a dict of the saved keys to ndarrays; the estimator's
        parameters and fitted arrays and values are already set. Raise
        ModelFileError if they do not fit.
        """

    def save(self, path, *, overwrite=False):
        """Save the fitted estimator to ``path`` (npz + JSON; no pickle).

        Parameters
        ----------
        path : str or path-like
            Destination, conventionally ending in ``.npz``. Written atomically.
        overwrite : bool, default=False

        Returns
        -------
        path : Path
        """
        from .audio._io import _atomic_write

        meta, arrays = _estimator_record(self)
        arrays[_META_KEY] = _encode_meta(meta)

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        return _atomic_write(path, write, overwrite=overwrite, suffix=".npz")


def _encode_meta(meta):
    return np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)


def _nested_kind(value):
    """"estimator" for a fitted-estimator parameter, "named" for a list of (name, estimator) pairs, else None."""
    from sklearn.base import BaseEstimator

    if isinstance(value, BaseEstimator):
        return "estimator"
    if isinstance(value, (list, tuple)) and value and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], BaseEstimator)
        for p in value
    ):
        return "named"
    return None


def _estimator_record(est, where=None):
    """What a model file holds for ``est``: its metadata (a dict) and its arrays (a dict of key -> ndarray).

    Estimator-valued parameters are recorded recursively under ``<param>/<i>/`` (see the module docstring).
    """
    from sklearn.frozen import FrozenEstimator
    from sklearn.utils.validation import check_is_fitted

    where = type(est).__name__ if where is None else where
    check_is_fitted(est)
    arrays, params, array_params, nested = {}, {}, [], {}
    for name, value in est.get_params(deep=False).items():
        kind = _nested_kind(value)
        if kind is not None:
            pairs = [(None, value)] if kind == "estimator" else [tuple(p) for p in value]
            frozen = []
            for i, (member_name, member) in enumerate(pairs):
                frozen.append(isinstance(member, FrozenEstimator))
                inner = member.estimator if frozen[-1] else member
                label = f"{where}.{name}[{member_name if member_name is not None else i}]"
                if not isinstance(inner, ModelIOMixin):
                    raise TypeError(
                        f"{label} is a {type(inner).__name__}, which has no pse_nmf model format: it cannot be "
                        "saved inside a pse_nmf model file"
                    )
                sub_meta, sub_arrays = _estimator_record(inner, label)
                prefix = f"{name}/{i}/"
                arrays[prefix + _META_KEY] = _encode_meta(sub_meta)
                arrays.update({prefix + k: v for k, v in sub_arrays.items()})
            nested[name] = {"kind": kind, "names": [n for n, _ in pairs], "frozen": frozen}
        elif isinstance(value, np.ndarray) or (
            isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple, np.ndarray))
        ):
            arrays[f"param:{name}"] = np.asarray(value)
            array_params.append(name)
        else:
            params[name] = _json_param(name, value)
    attributes = {}
    for name in est._fitted_scalars:
        value = getattr(est, name)
        attributes[name] = value if isinstance(value, str) else _json_param(name, value)
    for name in est._fitted_arrays:
        arrays[f"attr:{name}"] = np.asarray(getattr(est, name))
    extra = est._extra_arrays()
    for key in extra:
        if ":" not in key or key.startswith(_RESERVED_PREFIXES):
            raise ValueError(f"extra array key {key!r} must be '<prefix>:<name>', not param:/attr:")
        arrays[key] = np.asarray(extra[key])
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "estimator": type(est).__name__,
        "params": params,
        "array_params": array_params,
        "attributes": attributes,
        "arrays": list(est._fitted_arrays),
        "audio": est._audio_settings(),
    }
    if extra:
        meta["extra_arrays"] = list(extra)
    if nested:
        meta["nested"] = nested
    return meta, arrays


def _read_archive(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {str(path)!r}")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise ModelFileError(f"{str(path)!r} is a single .npy array, not a pse_nmf model file")
    if magic[:4] != b"PK\x03\x04":
        # checked before numpy sees it: np.load's own message for such files suggests
        # allow_pickle, which is not an option for model files
        raise ModelFileError(f"{str(path)!r} is not a readable pse_nmf model file (not an npz archive)")
    try:
        npz = np.load(path, allow_pickle=False)
        # a plain .npy file loads as an ndarray (no context manager): refuse it before the `with`
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ModelFileError(f"{str(path)!r} is a single .npy array, not a pse_nmf model file")
        with npz:
            if _META_KEY not in npz.files:
                raise ModelFileError(f"{str(path)!r} is an npz archive but not a pse_nmf model file (no metadata)")
            contents = {name: npz[name] for name in npz.files}
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged archive fails anywhere in zipfile or numpy's header parser
        # (BadZipFile, EOFError, OSError, ValueError, SyntaxError, tokenize.TokenError, ...); no code runs
        # while reading (allow_pickle=False), so every failure here is a damaged file
        raise ModelFileError(
            f"{str(path)!r} is not a readable pse_nmf model file (truncated or another format): {exc}"
        ) from exc
    return _decode_meta(contents.pop(_META_KEY), str(path)), contents


def _meta_field(meta, key, kind, default, where):
    """``meta[key]`` checked to be a ``kind``: hand-edited or damaged metadata gives a ModelFileError."""
    value = meta.get(key, default)
    if not isinstance(value, kind):
        raise ModelFileError(
            f"{where!r}: damaged metadata: {key!r} should be a {kind.__name__}, got {type(value).__name__}"
        )
    return value


def load_model(path, *, expected=None):
    """Load an estimator saved with ``save``.

    Parameters
    ----------
    path : str or path-like
    expected : type or tuple of types or None
        If given, the loaded estimator must be an instance of it.

    Returns
    -------
    estimator
        A fitted estimator of the saved class.

    Raises
    ------
    ModelFileError
        For a file of another kind, a truncated or damaged file, an unknown
        estimator, a newer format, settings that do not match the arrays,
        complex or non-numeric arrays, or a dictionary that is not finite,
        non-negative float32/float64 with no all-zero atom
        (:func:`check_dictionary`).
    ImportError
        For a model kind whose optional dependency (torch) is missing; the
        message names the file and what to install.
    """
    path = Path(path)
    meta, contents = _read_archive(path)
    return _build_estimator(meta, contents, str(path), expected=expected)


def _decode_meta(raw, where):
    try:
        return json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{where!r}: damaged metadata: {exc}") from exc


def _upgrade_params(cls, name, params, where):
    """Parameters of a file written by an older pse_nmf, in the estimator's current names.

    Three class attributes describe how an estimator's parameters changed (issue 18, lean estimators):

    ``_renamed_params`` : dict old name -> new name
        The value is kept under the new name (a file holding both is damaged).
    ``_legacy_params(params)`` : classmethod, optional
        Folds several old parameters into one option (e.g. ``quiet_noise_iter`` / ``fixed_noise_iter`` /
        ``unstaged_iter`` into ``noise_init``); raises ``ValueError`` for a combination the new option does not
        express.
    ``_removed_params`` : dict name -> the value the estimator now always uses
        A file that holds the parameter at that value loads silently (the model behaves as it did); any other
        value raises :class:`ModelFileError`: the model would behave differently, so it must be refitted
        (loading it with a warning would silently change its outputs).
    """
    params = dict(params)
    for old, new in getattr(cls, "_renamed_params", {}).items():
        if old in params:
            if new in params:
                raise ModelFileError(f"{where!r}: damaged parameters: both {old!r} and its new name {new!r}")
            params[new] = params.pop(old)
    legacy = getattr(cls, "_legacy_params", None)
    if legacy is not None:
        try:
            params = legacy(params)
        except ValueError as exc:
            raise ModelFileError(
                f"{where!r} was saved with parameters this pse_nmf ({__version__}) no longer offers in {name}: "
                f"{exc}; refit the model"
            ) from None
    for pname, kept in getattr(cls, "_removed_params", {}).items():
        if pname in params:
            if params[pname] != kept:
                raise ModelFileError(
                    f"{where!r} was saved with {pname}={params[pname]!r}, which this pse_nmf ({__version__}) "
                    f"removed from {name} (it always uses {pname}={kept!r}); refit the model"
                )
            del params[pname]
    return params


def _build_estimator(meta, contents, where, expected=None):
    """The fitted estimator that ``meta`` and ``contents`` (key -> ndarray, without ``__meta__``) describe."""
    if not isinstance(meta, dict):
        raise ModelFileError(f"{where!r} is not a pse_nmf model file (its metadata is not a JSON object)")
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{where!r} is not a pse_nmf model file (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise ModelFileError(
            f"{where!r}: damaged metadata: 'format_version' should be an integer, got {version!r}"
        )
    if version is None:
        raise ModelFileError(f"{where!r}: damaged metadata: no format version ('format_version')")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{where!r} has model format version {version!r}, newer than this pse_nmf "
            f"({__version__}) reads ({FORMAT_VERSION}); upgrade pse_nmf"
        )
    name = _meta_field(meta, "estimator", str, None, where)
    if name not in _REGISTRY and name in _OPTIONAL_ESTIMATORS:
        import importlib

        try:
            importlib.import_module(_OPTIONAL_ESTIMATORS[name])  # registers it
        except ImportError as exc:  # stays an ImportError (what to install), now naming the file
            raise ImportError(f"{where!r} holds a {name}, which needs an optional dependency: {exc}") from exc
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ModelFileError(f"{where!r} holds an unknown model kind {name!r}; known: {sorted(_REGISTRY)}")
    if expected is not None and not issubclass(cls, expected):
        names = expected.__name__ if isinstance(expected, type) else [e.__name__ for e in expected]
        raise ModelFileError(f"{where!r} holds a {name}, not a {names}")
    params = dict(_meta_field(meta, "params", dict, {}, where))
    for pname in _meta_field(meta, "array_params", list, [], where):
        key = f"param:{pname}"
        if key not in contents:
            raise ModelFileError(f"{where!r} is missing the array parameter {pname!r}")
        _check_array_dtype(where, pname, contents[key])
        params[pname] = contents[key]
    nested = _meta_field(meta, "nested", dict, {}, where)
    for pname, spec in nested.items():
        params[pname] = _build_nested(pname, spec, contents, where)
    params = _upgrade_params(cls, name, params, where)
    try:
        est = cls(**params)
    except TypeError as exc:
        raise ModelFileError(f"{where!r}: parameters do not fit {name}: {exc}") from exc
    if hasattr(est, "_validate_params"):  # a hand-edited value would fail later, deep inside numpy
        try:
            est._validate_params()
        except (ValueError, TypeError) as exc:
            raise ModelFileError(f"{where!r}: damaged parameters: {exc}") from exc
    for aname in cls._fitted_arrays:
        key = f"attr:{aname}"
        if key not in contents:
            raise ModelFileError(f"{where!r} is missing the fitted array {aname!r}")
        _check_array_dtype(where, aname, contents[key])
        setattr(est, aname, contents[key])
    attributes = _meta_field(meta, "attributes", dict, {}, where)
    for sname in cls._fitted_scalars:
        if sname not in attributes:
            raise ModelFileError(f"{where!r} is missing the fitted value {sname!r}")
        setattr(est, sname, attributes[sname])
    extra = {}
    for key in _meta_field(meta, "extra_arrays", list, [], where):
        if not isinstance(key, str) or key not in contents:
            raise ModelFileError(f"{where!r} is missing the array {key!r}")
        _check_array_dtype(where, key, contents[key])
        extra[key] = contents[key]
    audio = meta.get("audio")
    expected_audio = est._audio_settings()
    if expected_audio != audio:
        raise ModelFileError(
            f"{where!r}: recorded audio settings {audio} do not match the model's parameters {expected_audio}"
        )
    try:
        est._load_extra(extra)
        est._check_loaded()
    except ModelFileError as exc:
        if where in str(exc):
            raise
        raise ModelFileError(f"{where!r}: {exc}") from None
    return est


def _build_nested(pname, spec, contents, where):
    """Rebuild an estimator-valued parameter saved under ``<pname>/<i>/`` (see the module docstring)."""
    from sklearn.frozen import FrozenEstimator

    if not isinstance(spec, dict) or spec.get("kind") not in ("estimator", "named") \
            or not isinstance(spec.get("names"), list) or not isinstance(spec.get("frozen"), list) \
            or len(spec["names"]) != len(spec["frozen"]) or (spec["kind"] == "estimator" and len(spec["names"]) != 1):
        raise ModelFileError(
            f"{where!r}: damaged metadata: the nested estimators of {pname!r} are described as {spec!r}"
        )
    members = []
    for i, (name, frozen) in enumerate(zip(spec["names"], spec["frozen"])):
        prefix = f"{pname}/{i}/"
        label = f"{where}[{pname}/{i}]"
        sub = {k[len(prefix):]: v for k, v in contents.items() if k.startswith(prefix)}
        if _META_KEY not in sub:
            raise ModelFileError(f"{where!r} is missing the nested estimator {prefix}")
        sub_meta = _decode_meta(sub.pop(_META_KEY), label)
        member = _build_estimator(sub_meta, sub, label)
        members.append((name, FrozenEstimator(member) if frozen else member))
    if spec["kind"] == "estimator":
        return members[0][1]
    return members
