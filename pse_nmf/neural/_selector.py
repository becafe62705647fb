"""AutoencoderSelector: run every candidate enhancer, keep the output a speech model reconstructs best."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._ensemble import _unwrap
from .._persistence import ModelIOMixin, register_estimator
from ..audio._io import check_waveform, resample
from ..audio._stft import stft

__all__ = ["AutoencoderSelector"]


@register_estimator
class AutoencoderSelector(ModelIOMixin, BaseEstimator):
    r"""Collaborative run-time model selection: the candidate whose output looks most like clean speech wins.

    M. Kim's method [1]_: several enhancers each process the input; a model
    of clean speech scores each output by how well it reconstructs it (an
    output with residual noise or artefacts is reconstructed worse), and the
    output of the lowest error is returned. Kim uses a clean-speech
    autoencoder; here the scorer is a personal speech model of the library
    (our choice, the issue's "library's own idea"): the speech dictionary
    :math:`D_s` of a fitted :class:`~pse_nmf.SemiSupervisedNMF` (or any
    model with ``components_`` over the STFT bins of its ``n_fft``). For a
    candidate output :math:`y`, with :math:`V = |\mathrm{STFT}(y)|`, the
    activations of :math:`D_s` alone are fitted (KL, ``test_max_iter``
    multiplicative updates, the scorer's sparsity) and the score is
    :math:`D_{KL}(V \| A D_s) / \sum V`, which does not depend on the
    output's level. One choice per input (the whole waveform).

    Parameters
    ----------
    candidates : list of (str, estimator)
        Fitted enhancers with ``denoise(x, sr=...)``.
    scorer : fitted SemiSupervisedNMF (``known="speech"``)
        The speech model.

    Attributes
    ----------
    n_candidates_ : int
    last_scores_ : dict or None
        Scores (lower is purer speech) of the last :meth:`denoise` call.

    References
    ----------
    .. [1] M. Kim, "Collaborative deep learning for speech enhancement: a
       run-time model selection method using autoencoders", ICASSP 2017.
    """

    _parameter_constraints = {"candidates": [list, tuple], "scorer": [None, object]}
    _fitted_scalars = ("n_candidates_",)

    def __init__(self, candidates, scorer=None):
        self.candidates = candidates
        self.scorer = scorer

    def _members(self):
        if not isinstance(self.candidates, (list, tuple)) or len(self.candidates) == 0:
            raise ValueError(f"candidates must be a non-empty list of (name, estimator) pairs, got {self.candidates!r}")
        out = []
        for item in self.candidates:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
                    and hasattr(item[1], "denoise")):
                raise ValueError(f"candidates must be (name, enhancer with denoise) pairs, got {item!r}")
            out.append((item[0], item[1]))
        names = [n for n, _ in out]
        if len(set(names)) != len(names):
            raise ValueError(f"candidate names must be unique, got {names}")
        return out

    def _check_scorer(self):
        s = _unwrap(self.scorer) if self.scorer is not None else None
        if s is None or getattr(s, "components_", None) is None or getattr(s, "known", "speech") != "speech":
            raise ValueError("scorer must be a fitted speech model (a SemiSupervisedNMF with known='speech')")
        return s

    def fit(self, X=None, y=None):
        """Check the candidates and the scorer (nothing is trained); returns self."""
        self._validate_params()
        self._members()
        self._check_scorer()
        self.n_candidates_ = len(self.candidates)
        self.last_scores_ = None
        return self

    @property
    def sr(self):
        return int(getattr(self._check_scorer(), "sr", 16000))

    def score_outputs(self, outputs, sr):
        """Score (lower: purer speech) of each waveform of ``outputs`` (name -> waveform at rate ``sr``)."""
        from ..decomposition._nmf import _beta_value, _factorize, beta_divergence

        s = self._check_scorer()
        D = np.asarray(s.components_, dtype=np.float32)
        scores = {}
        for name, y in outputs.items():
            y = resample(np.asarray(y, dtype=np.float32), sr, s.sr)
            V = np.abs(stft(y, n_fft=s.n_fft, hop_length=s.hop_length)).astype(np.float32)
            if getattr(s, "spectrum_power", 1) != 1:
                V **= s.spectrum_power
            if not np.any(V):
                scores[name] = float("inf")
                continue
            A, _, _, _, _ = _factorize(V, D, free=np.zeros(D.shape[0], bool), beta=_beta_value(s.beta),
                                       sparsity=np.full(D.shape[0], s.sparsity, np.float32),
                                       max_iter=s.test_max_iter, tol=s.tol, rng=check_random_state(0))
            scores[name] = float(beta_divergence(V, A @ D, beta=s.beta)) / float(V.sum(dtype=np.float64))
        return scores

    def denoise(self, x, *, sr=None, downmix=False):
        """The output of the candidate of the lowest score (see the class docstring)."""
        check_is_fitted(self)
        y = check_waveform(x, name="x", downmix=downmix)
        rate = self.sr if sr is None else int(sr)
        outputs = {name: est.denoise(y, sr=rate) for name, est in self._members()}
        scores = self.score_outputs(outputs, rate)
        self.last_scores_ = scores
        return outputs[min(scores, key=scores.get)]
