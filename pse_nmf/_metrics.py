"""Quality metrics: SI-SDR, SDR, PESQ, STOI / eSTOI, and a tidy ``evaluate``."""

from __future__ import annotations

import warnings

import numpy as np

from ._audio import check_waveform, resample

__all__ = ["si_sdr", "sdr", "pesq", "stoi", "estoi", "evaluate"]


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
    """
    est, ref = _pair(estimate, reference)
    est = est - est.mean()
    ref = ref - ref.mean()
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
    """
    est, ref = _pair(estimate, reference)
    from mir_eval.separation import bss_eval_sources

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
    from pesq import NoUtterancesError, pesq as _pesq

    try:
        return float(_pesq(target, ref, est, mode))
    except NoUtterancesError:
        warnings.warn("PESQ found no utterance in the reference; returning NaN", RuntimeWarning, stacklevel=2)
        return float("nan")


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
    """
    est, ref = _pair(estimate, reference)
    from pystoi import stoi as _stoi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pystoi warns on short signals; it still returns
        return float(_stoi(ref, est, sr, extended=extended))


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
    metrics : sequence of str
        Any of ``si_sdr``, ``sdr``, ``pesq``, ``stoi``, ``estoi``.

    Returns
    -------
    dict
        ``{metric: value}``, and with ``mixture`` also ``{metric}_mixture``
        and ``{metric}_i``: a flat record, ready for ``pandas.DataFrame``.
    """
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
