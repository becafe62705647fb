"""pse_nmf: personalized speech enhancement with non-negative matrix factorization.

Small specialist models fitted to one speaker (few-shot) or to the noisy test
audio itself (zero-shot), with scikit-learn-style estimators.

>>> from pse_nmf import SemiSupervisedNMF              # doctest: +SKIP
>>> model = SemiSupervisedNMF().fit("enrollment/")     # doctest: +SKIP
>>> clean = model.denoise(noisy)                       # doctest: +SKIP
"""

from ._audio import (
    check_waveform,
    ideal_ratio_mask,
    istft,
    oracle_mask_denoise,
    ratio_mask,
    read_audio,
    resample,
    stft,
    write_audio,
)
from . import datasets
from ._data import (
    PersonalizationTask,
    TestMixture,
    list_recordings,
    load_recordings,
    make_personalization_task,
    mix_at_snr,
)
from ._metrics import estoi, evaluate, pesq, sdr, si_sdr, stoi
from ._dnsmos import dnsmos
from ._nmf import BetaNMF, beta_divergence, non_negative_factorization
from ._persistence import ModelFileError, load_model
from ._plot import plot_activations, plot_dictionary, plot_spectrograms
from ._semi import SemiSupervisedNMF
from ._usm import USM, plot_block_usage
from ._mld import MLD
from ._exemplar import ExemplarNMF
from ._online import OnlineNMF
from ._rnnoise import RNNoiseEnhancer
from ._ensemble import EnsembleEnhancer
from ._batch import denoise_files, fit_many
from ._version import __version__

load = load_model

__all__ = [
    "BetaNMF",
    "SemiSupervisedNMF",
    "USM",
    "MLD",
    "ExemplarNMF",
    "OnlineNMF",
    "RNNoiseEnhancer",
    "EnsembleEnhancer",
    "plot_block_usage",
    "denoise_files",
    "fit_many",
    "non_negative_factorization",
    "beta_divergence",
    "load",
    "load_model",
    "ModelFileError",
    "read_audio",
    "write_audio",
    "check_waveform",
    "resample",
    "stft",
    "istft",
    "ratio_mask",
    "ideal_ratio_mask",
    "oracle_mask_denoise",
    "si_sdr",
    "sdr",
    "pesq",
    "stoi",
    "estoi",
    "evaluate",
    "dnsmos",
    "list_recordings",
    "load_recordings",
    "mix_at_snr",
    "make_personalization_task",
    "PersonalizationTask",
    "TestMixture",
    "datasets",
    "plot_spectrograms",
    "plot_dictionary",
    "plot_activations",
    "__version__",
]
