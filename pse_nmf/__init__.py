"""pse_nmf: personalized speech enhancement with non-negative matrix factorization.

Small specialist models fitted to one speaker (few-shot) or to the noisy test
audio itself (zero-shot), with scikit-learn-style estimators.

The estimators and :func:`load` are here; the rest lives in subpackages:
:mod:`pse_nmf.audio` (I/O, resampling, STFT, masks), :mod:`pse_nmf.metrics`,
:mod:`pse_nmf.datasets` (example data, recordings, personalization tasks),
:mod:`pse_nmf.plotting` and :mod:`pse_nmf.decomposition` (the NMF functions).

>>> from pse_nmf import SemiSupervisedNMF              # doctest: +SKIP
>>> model = SemiSupervisedNMF().fit("enrollment/")     # doctest: +SKIP
>>> clean = model.denoise(noisy)                       # doctest: +SKIP
"""

import importlib as _importlib
import warnings as _warnings

from . import audio, datasets, decomposition, metrics, plotting
from ._batch import denoise_files, fit_many
from ._ensemble import EnsembleEnhancer
from ._persistence import ModelFileError
from ._persistence import load_model as load
from ._rnnoise import RNNoiseEnhancer
from ._version import __version__
from .decomposition import MLD, USM, BetaNMF, ExemplarNMF, OnlineNMF, SemiSupervisedNMF

__all__ = [
    "BetaNMF",
    "SemiSupervisedNMF",
    "USM",
    "MLD",
    "ExemplarNMF",
    "OnlineNMF",
    "RNNoiseEnhancer",
    "EnsembleEnhancer",
    "denoise_files",
    "fit_many",
    "load",
    "ModelFileError",
    "audio",
    "datasets",
    "decomposition",
    "metrics",
    "plotting",
    "__version__",
]

# Names of the old flat namespace: they keep working for one release, with a FutureWarning naming the new home.
_MOVED = {
    "load_model": "pse_nmf",
    "non_negative_factorization": "pse_nmf.decomposition",
    "beta_divergence": "pse_nmf.decomposition",
    "plot_block_usage": "pse_nmf.plotting",
    **{name: "pse_nmf.audio" for name in (
        "read_audio", "write_audio", "check_waveform", "resample", "stft", "istft", "ratio_mask",
        "ideal_ratio_mask", "oracle_mask_denoise",
    )},
    **{name: "pse_nmf.metrics" for name in ("si_sdr", "sdr", "pesq", "stoi", "estoi", "evaluate")},
    **{name: "pse_nmf.datasets" for name in (
        "list_recordings", "load_recordings", "mix_at_snr", "make_personalization_task", "PersonalizationTask",
        "TestMixture",
    )},
    **{name: "pse_nmf.plotting" for name in ("plot_spectrograms", "plot_dictionary", "plot_activations")},
}


def __getattr__(name):
    where = _MOVED.get(name)
    if where is None:
        raise AttributeError(f"module 'pse_nmf' has no attribute {name!r}")
    new = "pse_nmf.load" if name == "load_model" else f"{where}.{name}"
    _warnings.warn(
        f"pse_nmf.{name} moved to {new}; the old name will be removed in the next release",
        FutureWarning,
        stacklevel=2,
    )
    return load if name == "load_model" else getattr(_importlib.import_module(where), name)


def __dir__():
    return sorted(set(globals()) | set(_MOVED))
