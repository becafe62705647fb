"""No-reference quality: DNSMOS P.835 and personalized DNSMOS, through the ``speechmos`` package.

The ONNX models are the ones bundled in the ``speechmos`` wheel (Microsoft's
DNS-challenge models, MIT licence); nothing is downloaded. Needs the
``dnsmos`` extra: ``pip install "pse_nmf[dnsmos]"`` (speechmos, onnxruntime).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["dnsmos"]

_SR = 16000
_MIN_SECONDS = 1.0
_MODELS = {False: ("dnsmos_models", "sig_bak_ovr.onnx"), True: ("pdnsmos_models", "sig_bak_ovr.onnx")}
_P808 = ("dnsmos_models", "model_v8.onnx")


def _missing(exc):
    return ImportError(f'DNSMOS needs speechmos and onnxruntime: pip install "pse_nmf[dnsmos]" ({exc})')


def _model_file(folder, name):
    from importlib import resources

    path = resources.files("speechmos").joinpath(folder, name)
    if not path.is_file():
        raise FileNotFoundError(f"the speechmos installation lacks its bundled model {folder}/{name}")
    return str(path)


@functools.lru_cache(maxsize=2)
def _scorer(personalized):
    """Speechmos' DNSMOS scorer on the bundled models, with one-thread ONNX sessions (built once)."""
    try:
        import onnxruntime as ort
        from speechmos.dnsmos import DNSMOS
    except ImportError as exc:
        raise _missing(exc) from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    scorer = DNSMOS.__new__(DNSMOS)  # its __init__ builds sessions with default (all-core) threading
    scorer.primary_model_path = _model_file(*_MODELS[personalized])
    scorer.onnx_sess = ort.InferenceSession(scorer.primary_model_path, options, providers=["CPUExecutionProvider"])
    scorer.p808_onnx_sess = ort.InferenceSession(_model_file(*_P808), options, providers=["CPUExecutionProvider"])
    return scorer


def dnsmos(x, sr=16000, *, personalized=False):
    """DNSMOS P.835 scores of a speech recording, without a reference.

    A neural estimate of the mean opinion scores (1-5) that listeners would
    give in an ITU-T P.835 test: speech signal quality, background noise
    intrusiveness and overall quality, plus the P.808 overall score. The
    recording is resampled to 16 kHz and scored on 9.01 s windows with a 1 s
    hop, the window scores averaged (inputs shorter than 9.01 s are repeated
    to fill one window), exactly as the DNS challenge's reference code, which
    is what runs here (``speechmos.dnsmos``, its bundled ONNX models).

    Parameters
    ----------
    x : array-like of shape (n_samples,)
        The recording (enhanced or noisy); integer PCM is scaled to [-1, 1).
        Samples beyond full scale are clipped, as a 16-bit file would hold
        them.
    sr : int, default=16000
        Rate of ``x``.
    personalized : bool, default=False
        Use the personalized DNSMOS model of the personalized DNS challenge
        (ICASSP 2022/2023), which also counts interfering talkers as
        background noise (``bak``) instead of speech. ``p808`` comes from the
        same P.808 model either way.

    Returns
    -------
    dict
        ``sig``, ``bak``, ``ovrl`` (P.835, after the challenge's polynomial
        calibration) and ``p808``, floats.

    Raises
    ------
    ImportError
        Without the ``dnsmos`` extra.
    ValueError
        For silent input, or input shorter than 1 s.

    References
    ----------
    .. [1] C. K. A. Reddy, V. Gopal and R. Cutler, "DNSMOS P.835: A
       non-intrusive perceptual objective speech quality metric to evaluate
       noise suppressors", IEEE ICASSP 2022. doi:10.1109/ICASSP43922.2022.9746108
    .. [2] H. Dubey et al., "ICASSP 2023 Deep Noise Suppression Challenge",
       IEEE OJSP 2024 (personalized DNSMOS).

    Examples
    --------
    >>> from pse_nmf.datasets import load_example
    >>> x = load_example().speech["so762_9604"][0]
    >>> scores = dnsmos(x, 16000)                                  # doctest: +SKIP
    >>> sorted(scores)                                             # doctest: +SKIP
    ['bak', 'ovrl', 'p808', 'sig']
    """
    from .audio._io import check_waveform, resample

    y = check_waveform(x, name="x")
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sr must be a positive integer, got {sr!r}")
    if y.size < _MIN_SECONDS * sr:
        raise ValueError(f"x is {y.size / sr:.2f} s long; DNSMOS needs at least {_MIN_SECONDS:g} s of audio")
    if not np.any(y):
        raise ValueError("x is silent (all zeros): DNSMOS has nothing to score")
    y = np.clip(resample(y, int(sr), _SR), -1.0, 1.0).astype(np.float32)
    raw = _scorer(bool(personalized))(y, _SR, bool(personalized))
    return {"sig": float(raw["sig_mos"]), "bak": float(raw["bak_mos"]), "ovrl": float(raw["ovrl_mos"]),
            "p808": float(raw["p808_mos"])}
