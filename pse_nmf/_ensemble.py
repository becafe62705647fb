"""EnsembleEnhancer: fitted enhancers of any kind combined, as scikit-learn's VotingRegressor."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import check_is_fitted

from ._persistence import ModelFileError, ModelIOMixin, register_estimator
from .audio._io import check_waveform, resample
from .audio._stft import istft, ratio_mask, stft

__all__ = ["EnsembleEnhancer"]


def _unwrap(est):
    """The estimator inside a :class:`sklearn.frozen.FrozenEstimator`, else ``est`` itself."""
    from sklearn.frozen import FrozenEstimator

    return est.estimator if isinstance(est, FrozenEstimator) else est


def _frame_settings(est):
    """(sr, n_fft, hop_length) of a member that exposes a mask on STFT frames, else None."""
    if not all(isinstance(getattr(est, a, None), numbers.Integral) for a in ("sr", "n_fft", "hop_length")):
        return None
    if (hasattr(est, "_mask") or hasattr(est, "_decompose") and hasattr(est, "mask_power")) \
            and hasattr(est, "spectrum_power"):
        return int(est.sr), int(est.n_fft), int(est.hop_length)
    if hasattr(est, "predict_mask"):
        return int(est.sr), int(est.n_fft), int(est.hop_length)
    return None


def _member_mask(est, S):
    """Speech mask (n_frames, n_bins) in [0, 1] of a member for the mixture STFT ``S`` (n_frames, n_bins).

    The estimators built on :class:`~pse_nmf.audio._mixin.AudioMixin` (the NMF family, the neural mask
    networks) give exactly the mask their own ``separate`` applies: frames ``|S| ** spectrum_power``,
    the ``_mask(V)`` hook (or the ratio mask of ``_decompose(V)``'s speech and noise models). Others
    give ``predict_mask(|S|)``.
    """
    if (hasattr(est, "_mask") or hasattr(est, "_decompose")) and hasattr(est, "spectrum_power"):
        if hasattr(est, "_check_waveform_model"):
            est._check_waveform_model()
        V = np.abs(S)
        if est.spectrum_power != 1:
            V **= est.spectrum_power
        if hasattr(est, "_speech_mask"):
            return est._speech_mask(V)
        return ratio_mask(*est._decompose(V), power=est.mask_power)
    return np.asarray(est.predict_mask(np.abs(S)), dtype=S.real.dtype)


def _si_sdr_terms(w, G, b, e):
    """Target and distortion energies of SI-SDR for the combination ``Y @ w`` of one mixture.

    With mean-removed member outputs ``Y`` (n_samples, n_members) and clean
    signal ``s``: ``G = Y.T @ Y``, ``b = Y.T @ s``, ``e = s @ s``. The
    estimate's projection on ``s`` has energy ``(w @ b) ** 2 / e``; the rest,
    ``w @ G @ w`` minus that, is the distortion.
    """
    total = w @ G @ w
    target = (w @ b) ** 2 / e
    return target, max(total - target, 0.0), total


def _mean_si_sdr(w, grams):
    """Mean SI-SDR (dB) over the mixtures of the combination weights ``w``, and its gradient."""
    value, grad = 0.0, np.zeros_like(w)
    for G, b, e in grams:
        target, noise, total = _si_sdr_terms(w, G, b, e)
        floor = max(total, np.finfo(np.float64).tiny) * 1e-12  # an exact estimate: +120 dB, not inf
        target, noise = max(target, floor), max(noise, floor)
        value += 10 * (np.log10(target) - np.log10(noise))
        d_target = 2 * (w @ b) * b / e
        d_noise = 2 * G @ w - d_target
        grad += 10 / np.log(10) * (d_target / target - d_noise / noise)
    return value / len(grams), grad / len(grams)


def _nnls_start(grams, n):
    """Non-negative least squares of the unit-energy clean signals on the member outputs, normalised.

    Solved from the normal equations summed over mixtures (each mixture
    divided by its clean signal's energy, so that every mixture counts
    alike); a starting point for the SI-SDR search.
    """
    from scipy.optimize import nnls

    G = sum(g / e for g, _, e in grams)
    b = sum(bb / e for _, bb, e in grams)
    # the same problem as min ||R w - t|| with R^T R = G, R^T t = b (a square root of the normal equations)
    vals, vecs = np.linalg.eigh(G)
    vals = np.maximum(vals, vals.max() * 1e-12 if vals.max() > 0 else 1.0)
    R = (vecs * np.sqrt(vals)).T
    w, _ = nnls(R, (vecs.T @ b) / np.sqrt(vals))
    return w / w.sum() if w.sum() > 0 else np.full(n, 1.0 / n)


@register_estimator
class EnsembleEnhancer(ModelIOMixin, _BaseComposition, BaseEstimator):
    r"""Fitted speech enhancers of any kind combined into one, as scikit-learn's ``VotingRegressor``.

    The members are already fitted (personal NMF models, neural networks,
    :class:`~pse_nmf.RNNoiseEnhancer`, ...): the ensemble never refits them.
    With members :math:`f_1, \dots, f_M` and weights :math:`w` (non-negative,
    normalised to :math:`\sum_i w_i = 1`), a noisy waveform :math:`x` with
    STFT :math:`X` is enhanced as

    .. math::

        \text{waveform:}\quad \hat s = \sum_i w_i\, f_i(x),
        \qquad
        \text{mask:}\quad \hat s = \mathcal{S}^{-1}\Big(X \odot \sum_i w_i M_i(|X|)\Big),

    where :math:`M_i` is member :math:`i`'s speech mask and
    :math:`\mathcal{S}^{-1}` the inverse STFT. Because the weights sum to
    one, a convex combination of masks is again a mask in [0, 1], and an
    ensemble of one member (or weights with all mass on one member) is that
    member. Members with weight zero are not run.

    ``combine="waveform"`` works with any member that has ``denoise``; each
    one is given the input with ``sr=`` its rate and resamples it to its own
    rate with :func:`pse_nmf.audio.resample` (every pse_nmf estimator does), so
    members at different rates mix. ``combine="mask"`` computes the
    mixture's STFT once and needs members that expose a mask on its frames
    (the NMF estimators and the neural mask networks, through the
    ``_mask`` / ``_decompose`` their own ``separate`` uses, or ``predict_mask``), all at
    the same ``sr``, ``n_fft`` and ``hop_length``; the inverse STFT being
    linear, it equals the waveform average of the members' masked outputs
    on that STFT. (:class:`~pse_nmf.neural.CompactEnhancer`'s own ``denoise``
    applies the same mask through torch's STFT; the two agree to float
    round-off.)

    Learning the weights (:meth:`fit_weights`): SI-SDR does not depend on
    the estimate's scale, so only the direction of :math:`w` matters and the
    simplex loses nothing. For validation mixture :math:`k` with mean-removed
    member outputs :math:`Y_k` and clean signal :math:`s_k`, the SI-SDR of
    :math:`Y_k w` is a function of :math:`G_k = Y_k^\top Y_k`,
    :math:`b_k = Y_k^\top s_k` and :math:`\|s_k\|^2` alone (the target's
    energy is :math:`(w^\top b_k)^2 / \|s_k\|^2`, the distortion's
    :math:`w^\top G_k w` minus it; each mixture's optimal scale is SI-SDR's
    own :math:`\alpha_k`, handled in closed form), so the mean SI-SDR in dB,
    the figure reported, is maximised exactly, not a least-squares
    surrogate: by SLSQP on the simplex with an analytic gradient, started
    from the equal weights, from each member alone and from the
    non-negative least squares fit of the unit-energy clean signals, keeping
    the best point seen. The learned weights are thus never worse on the
    validation mixtures than the best member alone or the plain average.

    Parameters
    ----------
    estimators : list of (str, estimator)
        Named fitted members. Each needs ``denoise(x, *, sr=None,
        downmix=False)`` (and ``separate`` for :meth:`separate`). Wrap a
        member in :class:`sklearn.frozen.FrozenEstimator` to keep it fitted
        through :func:`sklearn.base.clone` (e.g. inside a search over
        ``weights``): ``clone`` otherwise returns unfitted copies, and the
        ensemble does not fit its members.
    weights : array-like of shape (n_members,) or None, default=None
        Non-negative weights, not all zero, normalised to sum to one;
        ``None`` means equal weights.
    combine : {"waveform", "mask"}, default="waveform"
        Average the members' output waveforms, or their masks (applied once
        to the mixture's STFT).

    Attributes
    ----------
    estimators_ : list of estimator
        The members, as given (not copies).
    named_estimators_ : sklearn.utils.Bunch
        The members by name.
    weights_ : ndarray of shape (n_members,)
        The normalised weights in use: from ``weights`` (:meth:`fit`) or
        learned (:meth:`fit_weights`).
    validation_score_ : float or None
        After :meth:`fit_weights`, the mean SI-SDR (dB) of the ensemble on
        the validation mixtures; None after :meth:`fit`.

    See Also
    --------
    sklearn.ensemble.VotingRegressor : the scikit-learn model of this interface.

    Notes
    -----
    ``save`` stores the members inside the ensemble's file, each as its own
    model file would be (arrays and JSON metadata) under the prefix
    ``estimators/<i>/``; loading a file with neural members needs torch.

    References
    ----------
    .. [1] L. Breiman, "Stacked regressions", Machine Learning 24, 49-64,
       1996. :doi:`10.1007/BF00117832` (non-negative combination weights
       fitted on held-out data).
    .. [2] J. Le Roux, S. Wisdom, H. Erdogan and J. R. Hershey, "SDR -
       half-baked or well done?", ICASSP 2019.
       :doi:`10.1109/ICASSP.2019.8683855` (SI-SDR).

    Examples
    --------
    >>> from pse_nmf import EnsembleEnhancer, SemiSupervisedNMF
    >>> from pse_nmf.datasets import mix_at_snr
    >>> from pse_nmf.datasets import load_example
    >>> data = load_example()
    >>> speech = data.speech[sorted(data.speech)[0]]
    >>> a = SemiSupervisedNMF(n_components=8, max_iter=20, test_max_iter=20, tol=0,
    ...                       random_state=0).fit(speech[:3])
    >>> b = SemiSupervisedNMF(n_components=16, max_iter=20, test_max_iter=20, tol=0,
    ...                       random_state=1).fit(speech[:3])
    >>> noisy, _ = mix_at_snr(speech[3], data.noise["running_tap"][0], 0, random_state=0)
    >>> ensemble = EnsembleEnhancer([("small", a), ("large", b)], weights=[1, 3]).fit()
    >>> ensemble.weights_
    array([0.25, 0.75])
    >>> ensemble.denoise(noisy).shape == noisy.shape
    True
    """

    _parameter_constraints = {
        "estimators": [list],
        "weights": ["array-like", None],
        "combine": [StrOptions({"waveform", "mask"})],
    }
    _fitted_arrays = ("weights_",)
    _fitted_scalars = ("validation_score_",)

    def __init__(self, estimators, weights=None, combine="waveform"):
        self.estimators = estimators
        self.weights = weights
        self.combine = combine

    # -- scikit-learn's composition protocol: nested parameters as "<name>__<param>" ----------------
    def get_params(self, deep=True):
        """Parameters of the ensemble and, with ``deep``, of its members (``<name>__<param>``)."""
        return self._get_params("estimators", deep=deep)

    def set_params(self, **params):
        """Set the ensemble's parameters, or replace or reconfigure members by name."""
        self._set_params("estimators", **params)
        return self

    # -- checks ---------------------------------------------------------------------------------------
    def _check_members(self):
        """The members' names and (unwrapped) estimators, after every check; raises a clear error."""
        estimators = self.estimators
        if len(estimators) == 0:
            raise ValueError("estimators is empty: give a list of (name, fitted estimator) pairs")
        names, members = [], []
        for i, pair in enumerate(estimators):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str)):
                raise TypeError(f"estimators[{i}] must be a (name, estimator) pair, got {pair!r}")
            names.append(pair[0])
            members.append(pair[1])
        seen = set()
        duplicates = sorted({n for n in names if n in seen or seen.add(n)})
        if duplicates:
            raise ValueError(f"estimator names must be unique; repeated: {duplicates}")
        bad = [n for n in names if "__" in n or not n or n in self.get_params(deep=False)]
        if bad:
            raise ValueError(
                f"estimator names must be non-empty, without '__' and not a parameter name "
                f"({sorted(self.get_params(deep=False))}); got {bad}"
            )
        for name, est in zip(names, members):
            if not callable(getattr(est, "denoise", None)):
                raise TypeError(f"member {name!r} ({type(est).__name__}) has no denoise method: it is not an enhancer")
            try:
                check_is_fitted(est)
            except TypeError as exc:  # not an estimator at all (no fit)
                raise TypeError(f"member {name!r} ({type(est).__name__}) is not an estimator: {exc}") from exc
            except Exception as exc:  # NotFittedError
                raise type(exc)(
                    f"member {name!r} ({type(est).__name__}) is not fitted: EnsembleEnhancer does not fit its "
                    "members; fit them first (and wrap them in sklearn.frozen.FrozenEstimator to keep them fitted "
                    "through clone())"
                ) from exc
        if self.combine == "mask":
            settings = {}
            for name, est in zip(names, members):
                s = _frame_settings(_unwrap(est))
                if s is None:
                    raise ValueError(
                        f'combine="mask": member {name!r} ({type(_unwrap(est)).__name__}) exposes no mask on STFT '
                        'frames (it needs _mask, _decompose or predict_mask, and sr, n_fft, hop_length); use '
                        'combine="waveform"'
                    )
                settings[name] = s
            if len(set(settings.values())) > 1:
                shown = ", ".join(f"{n}: sr={s[0]}, n_fft={s[1]}, hop_length={s[2]}" for n, s in settings.items())
                raise ValueError(
                    f'combine="mask" needs members with the same sr, n_fft and hop_length, got {shown}; '
                    'use combine="waveform"'
                )
        return names, members

    def _check_weights(self, n):
        if self.weights is None:
            return np.full(n, 1.0 / n)
        w = np.asarray(self.weights, dtype=np.float64)
        if w.ndim != 1 or w.size != n:
            raise ValueError(f"weights has shape {w.shape}, but there are {n} estimators: give one weight each")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"weights must be finite and non-negative, got {w.tolist()}")
        if w.sum() <= 0:
            raise ValueError("weights are all zero: give at least one positive weight")
        return w / w.sum()

    def _set_members(self, names, members):
        from sklearn.utils import Bunch

        self.estimators_ = list(members)
        self.named_estimators_ = Bunch(**dict(zip(names, members)))

    # -- fitting ---------------------------------------------------------------------------------------
    def fit(self, X=None, y=None):
        """Check the members and the weights; the members are not refitted.

        Like ``VotingRegressor`` over :class:`sklearn.frozen.FrozenEstimator`
        members: the members must already be fitted.

        Parameters
        ----------
        X : ignored
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        names, members = self._check_members()
        self.weights_ = self._check_weights(len(members))
        self._set_members(names, members)
        self.validation_score_ = None
        return self

    def fit_weights(self, mixtures, clean, *, sr=None, metric="si_sdr"):
        """Learn the weights that maximise the mean SI-SDR on validation mixtures.

        The method is in the class docstring. The ``weights`` parameter is
        not used (nor changed); :meth:`fit` resets ``weights_`` to it.

        Parameters
        ----------
        mixtures : list of array-like of shape (n_samples,)
            Noisy validation waveforms (not the ones the ensemble will be
            tested on).
        clean : list of array-like of shape (n_samples,)
            The clean speech of each mixture, same length.
        sr : int or None
            Rate of the waveforms; None means the members' common ``sr``.
        metric : {"si_sdr"}, default="si_sdr"
            Criterion averaged over the mixtures (in dB).

        Returns
        -------
        self
            With ``weights_`` and ``validation_score_`` set.
        """
        from scipy.optimize import minimize

        self._validate_params()
        if metric != "si_sdr":
            raise ValueError(f'metric={metric!r} is not supported; the only metric is "si_sdr"')
        names, members = self._check_members()
        self._set_members(names, members)
        if isinstance(mixtures, np.ndarray) and mixtures.ndim == 1:
            mixtures, clean = [mixtures], [clean]
        mixtures, clean = list(mixtures), list(clean)
        if not mixtures:
            raise ValueError("mixtures is empty: give at least one validation mixture")
        if len(mixtures) != len(clean):
            raise ValueError(f"{len(mixtures)} mixtures but {len(clean)} clean signals: give one clean signal each")
        rate = self._rate(sr, members)
        n = len(members)
        grams = []
        for k, (x, s) in enumerate(zip(mixtures, clean)):
            x = check_waveform(x, name=f"mixtures[{k}]")
            s = check_waveform(s, name=f"clean[{k}]", dtype=np.float64)
            if s.size != x.size:
                raise ValueError(f"clean[{k}] has {s.size} samples but mixtures[{k}] has {x.size}")
            s = s - s.mean()
            if not np.any(s):
                raise ValueError(f"clean[{k}] is silent (constant): SI-SDR is undefined")
            Y = np.stack([np.asarray(o, dtype=np.float64) for o in self._outputs(x, rate, members, np.ones(n))], 1)
            Y -= Y.mean(axis=0)
            grams.append((Y.T @ Y, Y.T @ s, float(s @ s)))

        def objective(w):
            value, grad = _mean_si_sdr(w, grams)
            return -value, -grad

        starts = [np.full(n, 1.0 / n), *np.eye(n), _nnls_start(grams, n)]
        best_w, best = None, -np.inf
        for w0 in starts:
            candidates = [w0]
            if n > 1:
                res = minimize(objective, w0, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * n,
                               constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                             "jac": lambda w: np.ones_like(w)}])
                candidates.append(res.x)
            for w in candidates:
                w = np.clip(w, 0, None)
                if w.sum() <= 0:
                    continue
                w = w / w.sum()
                value = -objective(w)[0]
                if value > best:
                    best_w, best = w, value
        self.weights_ = best_w
        self.validation_score_ = float(best)
        return self

    def _check_loaded(self):
        try:
            names, members = self._check_members()
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"the saved members do not form an ensemble: {exc}") from exc
        w = np.asarray(self.weights_)
        if w.shape != (len(members),) or not np.all(np.isfinite(w)) or np.any(w < 0) \
                or not np.isclose(w.sum(), 1.0):
            raise ModelFileError(f"weights_ {w.tolist()} are not {len(members)} non-negative weights summing to 1")
        self.weights_ = w.astype(np.float64)
        self._set_members(names, members)

    # -- enhancing -------------------------------------------------------------------------------------
    def _rate(self, sr, members):
        if sr is not None:
            if isinstance(sr, bool) or not isinstance(sr, numbers.Integral) or sr <= 0:
                raise ValueError(f"sr must be a positive integer rate in Hz, got {sr!r}")
            return int(sr)
        rates = {getattr(_unwrap(m), "sr", None) for m in members}
        if len(rates) != 1 or None in rates:
            raise ValueError(
                f"the members run at different rates ({sorted(map(str, rates))}): pass sr= the input's rate"
            )
        return int(rates.pop())

    def _outputs(self, y, rate, members, weights, parts=False):
        """Each member's output for the validated waveform ``y`` (float32 at ``rate``); None where weight 0.

        ``parts``: (speech, noise) pairs from ``separate`` instead of ``denoise``'s speech. In mask mode
        every output is the member's mask applied to the one mixture STFT.
        """
        if self.combine == "mask":
            return self._mask_outputs(y, rate, members, weights, parts)
        out = []
        for name, est, w in zip(self.named_estimators_, members, weights):
            if w == 0:
                out.append(None)
                continue
            if parts:
                if not callable(getattr(est, "separate", None)):
                    raise TypeError(f"member {name!r} ({type(est).__name__}) has no separate method")
                res = tuple(est.separate(y, sr=rate))
            else:
                res = (est.denoise(y, sr=rate),)
            for r in res:
                if np.shape(r) != y.shape:
                    raise ValueError(f"member {name!r} returned {np.shape(r)} samples for an input of {y.shape}")
            out.append(res if parts else res[0])
        return out

    def _mask_setup(self, y, rate, members):
        """The mixture's STFT at the members' rate (None for silent input), and the way back to ``y``'s rate."""
        model_sr, n_fft, hop = _frame_settings(_unwrap(members[0]))
        y_model = resample(y, rate, model_sr)
        if y_model.size < n_fft:
            raise ValueError(
                f"x has {y_model.size} samples at {model_sr} Hz, fewer than one STFT frame (n_fft={n_fft})"
            )
        S = stft(y_model, n_fft=n_fft, hop_length=hop) if np.any(y_model) else None

        def waveform(masked):
            part = istft(masked, n_fft=n_fft, hop_length=hop, length=y_model.size).astype(np.float32, copy=False)
            part = resample(part, model_sr, rate)
            return np.pad(part[: y.size], (0, max(0, y.size - part.size))).astype(np.float32, copy=False)

        return S, waveform

    def _mask_outputs(self, y, rate, members, weights, parts):
        """Mask mode: each member's mask applied to the one mixture STFT, as waveforms (None where weight 0)."""
        S, waveform = self._mask_setup(y, rate, members)
        out = []
        for est, w in zip(members, weights):
            if w == 0:
                out.append(None)
            elif S is None:
                out.append((np.zeros_like(y), np.zeros_like(y)) if parts else np.zeros_like(y))
            else:
                M = _member_mask(_unwrap(est), S)
                out.append((waveform(S * M), waveform(S * (1 - M))) if parts else waveform(S * M))
        return out

    def _combine(self, x, sr, downmix, parts):
        check_is_fitted(self)
        y = check_waveform(x, name="x", downmix=downmix)
        rate = self._rate(sr, self.estimators_)
        w = self.weights_
        if self.combine == "mask":
            return self._combine_masks(y, rate, parts)
        outs = self._outputs(y, rate, self.estimators_, w, parts=parts)
        n_parts = 2 if parts else 1
        acc = [np.zeros(y.size, np.float64) for _ in range(n_parts)]
        for o, wi in zip(outs, w):
            if o is None:
                continue
            for j in range(n_parts):
                acc[j] += wi * np.asarray(o[j] if parts else o, dtype=np.float64)
        acc = [a.astype(np.float32) for a in acc]
        return (acc[0], acc[1]) if parts else acc[0]

    def _combine_masks(self, y, rate, parts):
        S, waveform = self._mask_setup(y, rate, self.estimators_)
        if S is None:
            return (np.zeros_like(y), np.zeros_like(y)) if parts else np.zeros_like(y)
        M = None
        for est, w in zip(self.estimators_, self.weights_):
            if w == 0:
                continue
            Mi = _member_mask(_unwrap(est), S)
            Mi = Mi * Mi.dtype.type(w)
            M = Mi if M is None else M + Mi
        M = np.clip(M, 0, 1)  # round-off only: a convex combination of masks
        return (waveform(S * M), waveform(S * (1 - M))) if parts else waveform(S * M)

    def denoise(self, x, *, sr=None, downmix=False):
        """Enhance a noisy waveform with the weighted combination of the members.

        Parameters
        ----------
        x : array-like of shape (n_samples,)
            Noisy audio; integer PCM is scaled to [-1, 1).
        sr : int or None
            Rate of ``x``; None means the members' common ``sr`` (an error
            when they differ).
        downmix : bool, default=False
            Average the channels of multichannel input (refused otherwise).

        Returns
        -------
        ndarray of shape (n_samples,)
            float32, same length and rate as ``x``.
        """
        return self._combine(x, sr, downmix, parts=False)

    def separate(self, x, *, sr=None, downmix=False):
        """Split a noisy waveform into speech and noise estimates.

        In waveform mode both are the weighted averages of the members'
        ``separate`` outputs; in mask mode they are the combined mask and
        its complement applied to the mixture's STFT.

        Parameters
        ----------
        x : array-like of shape (n_samples,)
        sr : int or None
            Rate of ``x``; None means the members' common ``sr``.
        downmix : bool, default=False

        Returns
        -------
        speech, noise : ndarray of shape (n_samples,)
            float32, same length and rate as ``x``.
        """
        return self._combine(x, sr, downmix, parts=True)
