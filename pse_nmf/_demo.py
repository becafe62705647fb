"""A one-call demonstration on the embedded example data (``pse-nmf demo``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["run_demo"]

_DEMO_METRICS = ("si_sdr", "pesq", "estoi")
_FILES = {"noisy": "noisy.wav", "enhanced": "enhanced.wav", "clean": "clean.wav",
          "spectrograms": "spectrograms.png", "model": "model.npz"}


# Street noise: the realistic case, where the personal dictionary shows its use.
_DEFAULT_NOISE = "street_tram_bus"


def _pick(name, value, options, preferred=None):
    options = sorted(options)
    if value is None:
        return preferred if preferred in options else options[0]
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; the example data have {options}")
    return value


def run_demo(out_dir="demo_output", *, speaker=None, noise_type=None, snr_db=0.0, random_state=0,
             overwrite=False, verbose=True, model_params=None):
    """Personalize a model to one speaker of the example data and denoise a held-out utterance.

    The steps are those of a real use: fit a
    :class:`~pse_nmf.SemiSupervisedNMF` on all but the last utterance of one
    speaker (the enrollment, about 30 s of clean speech), mix the held-out
    utterance with a noise clip at ``snr_db``, denoise it, and score noisy
    and enhanced audio against the clean utterance.

    Parameters
    ----------
    out_dir : str or path-like, default="demo_output"
        Folder for the outputs (created if missing): ``noisy.wav``,
        ``enhanced.wav``, ``clean.wav``, ``spectrograms.png`` (noisy,
        enhanced and clean on one colour scale) and ``model.npz``.
    speaker : str or None
        Speaker id of the example data; None takes the first (sorted).
    noise_type : str or None
        Noise type of the example data; None takes ``"street_tram_bus"``
        (street babble and traffic). The first clip of that type is used.
    snr_db : float, default=0.0
        SNR of the mixture.
    random_state : int, RandomState instance or None, default=0
        Seeds the model and the noise excerpt.
    overwrite : bool, default=False
        Replace existing output files. Without it, any existing output is an
        error raised before any work is done.
    verbose : bool, default=True
        Print a table of the scores and timings.
    model_params : dict or None
        Extra :class:`~pse_nmf.SemiSupervisedNMF` parameters (e.g. a smaller
        ``n_components`` for a quick run); None uses the library defaults.

    Returns
    -------
    result : dict
        ``metrics`` (the record of :func:`pse_nmf.metrics.evaluate` with
        ``mixture=``: ``si_sdr``, ``si_sdr_mixture``, ``si_sdr_i``, and the
        same for ``pesq`` and ``estoi``), ``paths`` (name -> Path of each
        file written), ``speaker``, ``noise_type``, ``snr_db``,
        ``enrollment_seconds``, ``test_seconds``, ``fit_seconds``,
        ``denoise_seconds`` and ``real_time_factor`` (denoising time over
        audio duration; below 1 is faster than real time).

    Raises
    ------
    FileExistsError
        If an output exists and ``overwrite`` is False.
    ValueError
        For an unknown speaker or noise type.
    """
    from .audio._io import write_audio
    from .datasets import load_example
    from .datasets._tasks import mix_at_snr
    from .decomposition._semi import SemiSupervisedNMF
    from .metrics import evaluate
    from .plotting import plot_spectrograms

    out_dir = Path(out_dir)
    paths = {key: out_dir / name for key, name in _FILES.items()}
    if not overwrite:
        existing = [str(p) for p in paths.values() if p.exists()]
        if existing:
            raise FileExistsError(
                f"demo outputs exist: {', '.join(existing)}; pass overwrite=True (CLI: --overwrite) "
                "or choose another folder"
            )
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{str(out_dir)!r} exists and is not a folder")

    data = load_example()
    sr = int(data.sr)
    speaker = _pick("speaker", speaker, data.speech)
    noise_type = _pick("noise type", noise_type, data.noise, preferred=_DEFAULT_NOISE)
    utterances = data.speech[speaker]
    if len(utterances) < 2:
        raise ValueError(f"speaker {speaker!r} has {len(utterances)} utterance(s); the demo needs at least 2")
    enrollment, clean = utterances[:-1], utterances[-1]
    noisy, _ = mix_at_snr(clean, data.noise[noise_type][0], snr_db, random_state=random_state)

    model = SemiSupervisedNMF(random_state=random_state, sr=sr)
    if model_params:
        model.set_params(**model_params)
    t0 = time.perf_counter()
    model.fit(enrollment)
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    enhanced = model.denoise(noisy)
    denoise_seconds = time.perf_counter() - t0
    metrics = evaluate(enhanced, clean, mixture=noisy, sr=sr, metrics=_DEMO_METRICS)

    out_dir.mkdir(parents=True, exist_ok=True)
    # One gain for all three files keeps them comparable and avoids clipping
    # a loud mixture in 16-bit PCM; the scores above are level-independent.
    peak = max(float(np.max(np.abs(s))) for s in (noisy, enhanced, clean))
    gain = 0.99 / peak if peak > 0.99 else 1.0
    for key, signal in (("noisy", noisy), ("enhanced", enhanced), ("clean", clean)):
        write_audio(paths[key], signal * gain, sr, overwrite=overwrite)
    plot_spectrograms(
        {"noisy": noisy, "enhanced": enhanced, "clean": clean}, sr=sr, path=paths["spectrograms"],
        n_fft=model.n_fft, hop_length=model.hop_length, overwrite=overwrite,
        title=f"speaker {speaker}, {noise_type} noise at {snr_db:g} dB SNR",
    )
    model.save(paths["model"], overwrite=overwrite)

    enrollment_seconds = sum(u.size for u in enrollment) / sr
    test_seconds = clean.size / sr
    result = {
        "metrics": metrics,
        "paths": paths,
        "speaker": speaker,
        "noise_type": noise_type,
        "snr_db": float(snr_db),
        "enrollment_seconds": enrollment_seconds,
        "test_seconds": test_seconds,
        "fit_seconds": fit_seconds,
        "denoise_seconds": denoise_seconds,
        "real_time_factor": denoise_seconds / test_seconds,
    }
    if verbose:
        print(_report(result))
    return result


def _report(result):
    m = result["metrics"]
    rows = [("metric", "noisy", "enhanced", "improvement")]
    for name, label in (("si_sdr", "SI-SDR (dB)"), ("pesq", "PESQ"), ("estoi", "eSTOI")):
        rows.append((label, f"{m[name + '_mixture']:.2f}", f"{m[name]:.2f}", f"{m[name + '_i']:+.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    table = "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
        for r in rows
    )
    lines = [
        f"pse-nmf demo: speaker {result['speaker']}, {result['noise_type']} noise at {result['snr_db']:g} dB SNR",
        f"enrollment {result['enrollment_seconds']:.1f} s of clean speech; test utterance "
        f"{result['test_seconds']:.1f} s",
        "",
        table,
        "",
        f"fit     {result['fit_seconds']:.2f} s",
        f"denoise {result['denoise_seconds']:.2f} s (real-time factor {result['real_time_factor']:.3f})",
        "(the first run after installing also compiles the Numba kernels, cached on disk for later runs)",
        "",
        "wrote " + ", ".join(str(p) for p in result["paths"].values()),
    ]
    return "\n".join(lines)
