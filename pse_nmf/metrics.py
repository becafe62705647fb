"""Quality metrics: SI-SDR, SDR, PESQ, STOI / eSTOI, and a tidy ``evaluate``."""

from __future__ import annotations

import warnings

import numpy as np

from ._dnsmos import dnsmos
from .audio._io import check_waveform, resample

__all__ = ["si_sdr", "sdr", "pesq", "stoi", "estoi", "evaluate", "dnsmos"]


_SDR_FILTER = 512  # bss_eval_sources' default distortion filter length
_PESQ_MIN_SECONDS = 0.25  # the pesq package's own minimum (BufferTooShortError below it)
# pystoi: 30 frames of 256 samples with hop 128 at 10 kHz, counted after its silent frames are removed
_STOI_FS, _STOI_MIN_FRAMES, _STOI_FRAME = 10000, 30, 256


def _pair(estimate, reference):
    est = check_waveform(estimate, name="estimate", dtype=np.float64)
    ref = check_waveform(reference, name="reference", dtype=np.float64)
    if est.shape != ref.shape:
        raise ValueError(f"estimate and reference differ in length: {est.size} vs {ref.size} samples")
    if not np.any(ref):
        raise ValueError("reference is silent (all zeros): the metric is undefined")
    return est, ref


def si_sdr(estimate, reference):
    r"""Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., ICASSP 2019).

    .. math:: \mathrm{SI\text{-}SDR} = 10 \log_{10}
              \frac{\|\alpha s\|^2}{\|\alpha s - \hat s\|^2},
              \quad \alpha = \frac{\hat s^\top s}{\|s\|^2}

    Both signals are mean-removed first (as in the paper's reference code).

    Parameters
    ----------
    estimate, reference : array-like of shape (n_samples,)

    Returns
    -------
    float
        ``-inf`` for a silent (all-zero, or constant) estimate. The ratio is
        0/0 there (the projection and the residual both vanish) and, being
        scale-invariant, has no limit as the estimate shrinks to zero; a
        silent output holds none of the target, so it is scored below every
        real estimate rather than 0 dB, the score of an untouched 0 dB
        mixture (what it returned before). ``-inf`` rather than an error so
        that a batch of files is still scored; means over it show ``-inf``.

    Raises
    ------
    ValueError
        For signals of different lengths, or a silent or constant reference
        (e.g. one sample).
    """
    est, ref = _pair(estimate, reference)
    est = est - est.mean()
    ref = ref - ref.mean()
    if not np.any(ref):
        raise ValueError(f"reference is constant ({ref.size} sample(s)): SI-SDR, on mean-removed signals, is undefined")
    if not np.any(est):
        return float("-inf")
    alpha = np.dot(est, ref) / np.dot(ref, ref)
    target = alpha * ref
    noise = est - target
    tiny = np.finfo(np.float64).tiny
    # difference of logs: the ratio itself overflows when the estimate is exact (noise energy 0)
    return float(10 * (np.log10(max(np.dot(target, target), tiny)) - np.log10(max(np.dot(noise, noise), tiny))))


def sdr(estimate, reference):
    """Signal-to-distortion ratio in dB of BSS Eval (Vincent et al., 2006), via mir_eval.

    The estimate may differ from the reference by a 512-tap time-invariant
    filter (bss_eval_sources' default), so SDR >= SI-SDR in general.

    Parameters
    ----------
    estimate, reference : array-like of shape (n_samples,)

    Returns
    -------
    float
        ``-inf`` for an all-zero estimate, as :func:`si_sdr`.

    Raises
    ------
    ValueError
        For signals shorter than the 512-tap distortion filter, of
        different lengths, or a silent reference.
    """
    est, ref = _pair(estimate, reference)
    if est.size < _SDR_FILTER:
        raise ValueError(f"{est.size} samples are too short for SDR: bss_eval allows a {_SDR_FILTER}-tap "
                         f"distortion filter, so at least {_SDR_FILTER} samples are needed")
    if not np.any(est):
        return float("-inf")  # mir_eval refuses it; same reason as si_sdr
    try:
        from mir_eval.separation import bss_eval_sources
    except ImportError:
        raise ImportError(
            "sdr needs mir_eval (BSS Eval), an optional dependency: pip install \"pse_nmf[sdr]\" "
            "(si_sdr, pesq, stoi and estoi need nothing more)"
        ) from None

    with warnings.catch_warnings():
        # mir_eval >= 0.8 flags bss_eval_sources as deprecated with a FutureWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        sdr_, _, _, _ = bss_eval_sources(ref[None, :], est[None, :], compute_permutation=False)
    return float(sdr_[0])


def pesq(estimate, reference, sr=16000, mode=None):
    """PESQ (ITU-T P.862) MOS-LQO via the ``pesq`` package.

    Parameters
    ----------
    estimate, reference : array-like of shape (n_samples,)
    sr : int, default=16000
        Rate of the signals. PESQ is defined at 8 and 16 kHz; other rates are
        resampled to 16 kHz (wide band) or, below 16 kHz, to 8 kHz.
    mode : {"wb", "nb"} or None
        Wide band (16 kHz) or narrow band (8 kHz); default follows the rate.

    Returns
    -------
    float
        NaN (with a warning) when PESQ finds no speech in the reference.
    """
    est, ref = _pair(estimate, reference)
    target = 16000 if sr >= 16000 else 8000
    if mode is None:
        mode = "wb" if target == 16000 else "nb"
    if mode not in ("wb", "nb"):
        raise ValueError(f"mode must be 'wb' or 'nb', got {mode!r}")
    if mode == "wb" and target != 16000:
        raise ValueError("wide-band PESQ needs 16 kHz audio; pass mode='nb' for 8 kHz")
    if sr != target:
        est, ref = resample(est, sr, target), resample(ref, sr, target)
    if ref.size < _PESQ_MIN_SECONDS * target:
        raise ValueError(_pesq_too_short(ref.size / target))
    from pesq import BufferTooShortError, NoUtterancesError
    from pesq import pesq as _pesq

    try:
        return float(_pesq(target, ref, est, mode))
    except BufferTooShortError:  # resampling round-off at the limit
        raise ValueError(_pesq_too_short(ref.size / target)) from None
    except NoUtterancesError:
        warnings.warn("PESQ found no utterance in the reference; returning NaN", RuntimeWarning, stacklevel=2)
        return float("nan")


def _pesq_too_short(seconds):
    return f"{seconds:.3f} s is too short for PESQ (at least {_PESQ_MIN_SECONDS} s)"


def _stoi_too_short(seconds):
    need = ((_STOI_MIN_FRAMES - 1) * _STOI_FRAME // 2 + _STOI_FRAME) / _STOI_FS
    return (f"{seconds:.3f} s is too short for STOI: it needs {_STOI_MIN_FRAMES} frames (about {need:.2f} s) of "
            "non-silent reference, counted after removing the frames 40 dB below the loudest")


def stoi(estimate, reference, sr=16000, extended=False):
    """Short-time objective intelligibility (Taal et al., 2011) via pystoi.

    ``extended=True`` gives eSTOI (Jensen & Taal, 2016).

    Parameters
    ----------
    estimate, reference : array-like of shape (n_samples,)
    sr : int, default=16000
        Rate of the signals (pystoi resamples to 10 kHz).
    extended : bool, default=False

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For signals too short for STOI: fewer than 30 frames of 25.6 ms
        (about 0.4 s) once pystoi has removed the silent frames. pystoi
        itself warns and returns 1e-05 there, a score that looks real.
    """
    est, ref = _pair(estimate, reference)
    need = (_STOI_MIN_FRAMES - 1) * _STOI_FRAME // 2 + _STOI_FRAME
    if ref.size * _STOI_FS / sr < need:
        raise ValueError(_stoi_too_short(ref.size / sr))
    from pystoi import stoi as _stoi

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        value = float(_stoi(ref, est, sr, extended=extended))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        raise ValueError(_stoi_too_short(ref.size / sr))
    return value


def estoi(estimate, reference, sr=16000):
    """Extended STOI (Jensen & Taal, IEEE/ACM TASLP 2016); see :func:`stoi`.

    Parameters
    ----------
    estimate, reference : array-like of shape (n_samples,)
    sr : int, default=16000

    Returns
    -------
    float
    """
    return stoi(estimate, reference, sr=sr, extended=True)


_METRICS = {
    "si_sdr": lambda e, r, sr: si_sdr(e, r),
    "sdr": lambda e, r, sr: sdr(e, r),
    "pesq": lambda e, r, sr: pesq(e, r, sr=sr),
    "stoi": lambda e, r, sr: stoi(e, r, sr=sr),
    "estoi": lambda e, r, sr: estoi(e, r, sr=sr),
}


def evaluate(estimate, reference, mixture=None, *, sr=16000, metrics=("si_sdr", "sdr", "pesq", "stoi", "estoi")):
    """Score an enhanced signal against the clean reference.

    Parameters
    ----------
    estimate, reference : array-like of shape (n_samples,)
    mixture : array-like of shape (n_samples,) or None
        The noisy input; when given, each metric is also computed for it and
        the improvement ``<metric>_i = estimate - mixture`` is reported.
    sr : int, default=16000
    metrics : str or sequence of str
        Any of ``si_sdr``, ``sdr``, ``pesq``, ``stoi``, ``estoi``; a string
        is one name or comma-separated names (``"si_sdr,pesq"``), as on the
        command line.

    Returns
    -------
    dict
        ``{metric: value}``, and with ``mixture`` also ``{metric}_mixture``
        and ``{metric}_i``: a flat record, ready for ``pandas.DataFrame``.
    """
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    metrics = list(dict.fromkeys(metrics))
    unknown = set(metrics) - set(_METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {sorted(_METRICS)}")
    record = {}
    for name in metrics:
        record[name] = _METRICS[name](estimate, reference, sr)
    if mixture is not None:
        for name in metrics:
            record[f"{name}_mixture"] = _METRICS[name](mixture, reference, sr)
            record[f"{name}_i"] = record[name] - record[f"{name}_mixture"]
    return record
