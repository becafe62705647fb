"""Figures: spectrograms, dictionaries and activations.

Every function builds a :class:`matplotlib.figure.Figure` with its own Agg
canvas instead of going through :mod:`matplotlib.pyplot`, so it neither
changes the user's backend nor registers figures with pyplot's state machine
(no leaked figures in loops, safe in scripts without a display). In a
notebook the returned figure displays itself; in a script pass ``path`` to
write a PNG (atomically: a reader sees the old file or the complete new one).

Orientation follows the library: spectrograms and activations are
(n_frames, n_bins) and (n_frames, n_atoms); a dictionary is
(n_atoms, n_bins). The images show frequency or atoms upwards and time to the
right, as audio people read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .audio._io import _atomic_write, check_waveform
from .audio._stft import stft

__all__ = ["plot_spectrograms", "plot_dictionary", "plot_activations", "plot_block_usage"]

_CMAP = "magma"


def _new_figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas; pyplot is never involved
    return fig


def _panels(fig, n_rows, *, title=False, **kw):
    """``n_rows`` stacked axes with fixed margins in inches.

    Fixed margins instead of a layout engine: constrained layout measures
    every tick label and doubles the drawing time of these simple figures.
    """
    width, height = fig.get_size_inches()
    top = 0.3 + (0.3 if title else 0.0)
    grid = dict(left=0.8 / width, right=1.0 - 0.85 / width, bottom=0.55 / height, top=1.0 - top / height,
                hspace=0.4 * n_rows / max(height - 0.85 - top, 0.5))
    return fig.subplots(n_rows, 1, squeeze=False, gridspec_kw=grid, **kw)[:, 0]


def _colorbar(fig, image, axes, label):
    return fig.colorbar(image, ax=list(axes), label=label, fraction=0.04, pad=0.015, aspect=40)


def _save(fig, path, overwrite):
    if path is not None:
        _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100), overwrite=overwrite,
                      suffix=".png")


def _db(x, top_db, ref=None):
    """``20 log10 x`` relative to ``ref`` (default: the maximum), floored at ``-top_db``."""
    x = np.asarray(x, dtype=np.float64)
    ref = float(np.max(x)) if ref is None else float(ref)
    tiny = np.finfo(np.float64).tiny
    if ref <= tiny:  # all zeros: a uniform floor, not a NaN image
        return np.full(x.shape, -float(top_db))
    return np.maximum(20.0 * np.log10(np.maximum(x, tiny) / ref), -float(top_db))


def _check_positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_matrix(a, name, shape_doc):
    arr = np.asarray(a)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a numeric array of shape {shape_doc}, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape {shape_doc}, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); expected {shape_doc}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative")
    return arr


def _check_blocks(block_sizes, n_atoms):
    if block_sizes is None:
        return None
    sizes = np.asarray(block_sizes)
    if sizes.ndim != 1 or sizes.size == 0 or sizes.dtype.kind not in "iu" or np.any(sizes < 1):
        raise ValueError(f"block_sizes must be a non-empty sequence of positive integers, got {block_sizes!r}")
    if int(sizes.sum()) != n_atoms:
        raise ValueError(f"block_sizes sum to {int(sizes.sum())}, but there are {n_atoms} atoms")
    return np.cumsum(sizes)[:-1]  # first atom of every block but the first


def plot_spectrograms(signals, sr=16000, path=None, *, n_fft=1024, hop_length=256, title=None, top_db=80.0,
                      overwrite=False):
    """Log-magnitude spectrograms of several waveforms on one colour scale.

    Parameters
    ----------
    signals : mapping of str to array-like of shape (n_samples,)
        Label -> waveform, e.g. ``{"noisy": x, "enhanced": y, "clean": s}``;
        one panel per entry, top to bottom in the mapping's order. Lengths
        may differ (the time axes are shared).
    sr : int, default=16000
        Sample rate of every waveform.
    path : str, path-like or None
        If given, the figure is also written there as a PNG.
    n_fft, hop_length : int
        STFT settings (those of :func:`pse_nmf.audio.stft`).
    title : str or None
        Figure title.
    top_db : float, default=80.0
        Dynamic range shown: the shared colour scale spans
        ``[peak - top_db, peak]`` dB, where ``peak`` is the loudest bin of
        all the signals, so panels compare directly.
    overwrite : bool, default=False
        Replace an existing ``path``; without it an existing file is an error.

    Returns
    -------
    fig : matplotlib.figure.Figure
        ``fig.axes`` holds one panel per signal followed by the colour bar.

    Raises
    ------
    TypeError
        If ``signals`` is not a mapping.
    ValueError
        For an empty mapping or an invalid waveform (see
        :func:`pse_nmf.audio.check_waveform`).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> fig = plot_spectrograms({"tone": np.sin(2 * np.pi * 440 * t)})
    >>> len(fig.axes)  # one panel and its colour bar
    2
    """
    if not isinstance(signals, Mapping):
        raise TypeError(
            f"signals must be a mapping of label -> waveform (e.g. {{'noisy': x}}), got {type(signals).__name__}"
        )
    if len(signals) == 0:
        raise ValueError("signals is empty: give at least one label -> waveform")
    sr = _check_positive_int(sr, "sr")
    n_fft = _check_positive_int(n_fft, "n_fft")
    hop_length = _check_positive_int(hop_length, "hop_length")
    if not top_db > 0:
        raise ValueError(f"top_db must be positive, got {top_db!r}")
    mags = {}
    for label, x in signals.items():
        y = check_waveform(x, name=f"signals[{label!r}]")
        mags[str(label)] = np.abs(stft(y, n_fft=n_fft, hop_length=hop_length))
    peak = max(float(m.max()) for m in mags.values())
    vmax = 20.0 * np.log10(peak) if peak > 0 else 0.0
    vmin = vmax - float(top_db)

    fig = _new_figure(8.0, 0.9 + 1.9 * len(mags) + (0.3 if title is not None else 0.0))
    axes = _panels(fig, len(mags), title=title is not None, sharex=True, sharey=True)
    nyquist_khz = sr / 2000.0
    half_bin = nyquist_khz / (n_fft // 2) / 2
    frame_s = hop_length / sr
    image = None
    for ax, (label, mag) in zip(axes, mags.items()):
        db = np.maximum(20.0 * np.log10(np.maximum(mag, np.finfo(mag.dtype).tiny)), vmin - 1.0)
        image = ax.imshow(
            db.T, origin="lower", aspect="auto", cmap=_CMAP, vmin=vmin, vmax=vmax, interpolation="nearest",
            extent=(-frame_s / 2, (mag.shape[0] - 0.5) * frame_s, -half_bin, nyquist_khz + half_bin),
        )
        ax.set_title(label, loc="left", fontsize="medium")
        ax.set_ylabel("frequency (kHz)")
    # imshow sets the shared x limits to the last image's extent; show the longest signal whole
    longest = max(m.shape[0] for m in mags.values())
    axes[-1].set_xlim(-frame_s / 2, (longest - 0.5) * frame_s)
    axes[-1].set_xlabel("time (s)")
    _colorbar(fig, image, axes, "magnitude (dB)")
    if title is not None:
        fig.suptitle(title, y=1.0 - 0.15 / fig.get_size_inches()[1], va="top")
    _save(fig, path, overwrite)
    return fig


def plot_dictionary(components, sr=16000, n_fft=1024, path=None, max_atoms=64, *, block_sizes=None, title=None,
                    top_db=60.0, overwrite=False):
    """Show dictionary atoms as an image: one column per atom, frequency upwards.

    Each atom is shown in dB relative to its own peak, so quiet and loud
    atoms are equally readable.

    Parameters
    ----------
    components : array-like of shape (n_atoms, n_bins)
        Non-negative atoms, e.g. a fitted ``components_``;
        ``n_bins = n_fft // 2 + 1``.
    sr : int, default=16000
    n_fft : int, default=1024
    path : str, path-like or None
        If given, the figure is also written there as a PNG.
    max_atoms : int, default=64
        Most atoms shown; a larger dictionary is shown by ``max_atoms``
        evenly spaced atoms (tick labels give their true indices).
    block_sizes : sequence of int or None
        Sizes of consecutive atom blocks (e.g. one block per speaker of a
        universal speech model); boundaries are drawn as lines.
    title : str or None
    top_db : float, default=60.0
        Range shown below each atom's peak.
    overwrite : bool, default=False

    Returns
    -------
    fig : matplotlib.figure.Figure
        One panel and its colour bar.
    """
    D = _check_matrix(components, "components", "(n_atoms, n_bins)")
    sr = _check_positive_int(sr, "sr")
    n_fft = _check_positive_int(n_fft, "n_fft")
    max_atoms = _check_positive_int(max_atoms, "max_atoms")
    n_atoms, n_bins = D.shape
    if n_bins != n_fft // 2 + 1:
        raise ValueError(
            f"components has {n_bins} bins per atom, but n_fft={n_fft} gives {n_fft // 2 + 1}; "
            "pass the n_fft the model was fitted with (components are (n_atoms, n_bins))"
        )
    boundaries = _check_blocks(block_sizes, n_atoms)
    idx = np.unique(np.round(np.linspace(0, n_atoms - 1, min(n_atoms, max_atoms))).astype(int))
    peaks = D[idx].max(axis=1, keepdims=True)
    tiny = np.finfo(np.float64).tiny
    img = np.where(peaks > tiny, D[idx] / np.maximum(peaks, tiny), 0.0)
    db = _db(img, top_db=top_db, ref=1.0)

    fig = _new_figure(min(12.0, 3.0 + 0.12 * idx.size), 4.0)
    (ax,) = _panels(fig, 1)
    nyquist_khz = sr / 2000.0
    half_bin = nyquist_khz / (n_fft // 2) / 2
    image = ax.imshow(db.T, origin="lower", aspect="auto", cmap=_CMAP, vmin=-float(top_db), vmax=0.0,
                      interpolation="nearest", extent=(-0.5, idx.size - 0.5, -half_bin, nyquist_khz + half_bin))
    _index_axis(ax.xaxis, idx)
    if boundaries is not None:
        for b in boundaries:
            ax.axvline(np.searchsorted(idx, b) - 0.5, color="cyan", linewidth=1.0)
    ax.set_xlabel("atom" if idx.size == n_atoms else f"atom ({idx.size} of {n_atoms} shown)")
    ax.set_ylabel("frequency (kHz)")
    _colorbar(fig, image, [ax], "dB re atom peak")
    if title is not None:
        ax.set_title(title)
    _save(fig, path, overwrite)
    return fig


def _index_axis(axis, idx):
    """Integer ticks on an image axis whose positions stand for atoms ``idx``."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=10, integer=True))

    def label(v, _pos):
        i = int(round(v))
        return str(idx[i]) if 0 <= i < idx.size and abs(v - i) < 1e-6 else ""

    axis.set_major_formatter(FuncFormatter(label))


def plot_activations(activations, hop_length, sr, path=None, *, block_sizes=None, title=None, top_db=60.0,
                     overwrite=False):
    """Show activations over time: one row per atom, time to the right.

    Parameters
    ----------
    activations : array-like of shape (n_frames, n_atoms)
        Non-negative activations in the library's orientation (frames first).
    hop_length : int
        Samples between frames.
    sr : int
        Sample rate.
    path : str, path-like or None
        If given, the figure is also written there as a PNG.
    block_sizes : sequence of int or None
        Sizes of consecutive atom blocks (e.g. speech atoms then noise
        atoms, or one block per speaker); boundaries are drawn as lines.
    title : str or None
    top_db : float, default=60.0
        Range shown below the largest activation.
    overwrite : bool, default=False

    Returns
    -------
    fig : matplotlib.figure.Figure
        One panel and its colour bar.
    """
    A = _check_matrix(activations, "activations", "(n_frames, n_atoms)")
    hop_length = _check_positive_int(hop_length, "hop_length")
    sr = _check_positive_int(sr, "sr")
    n_frames, n_atoms = A.shape
    boundaries = _check_blocks(block_sizes, n_atoms)
    db = _db(A, top_db=top_db)
    frame_s = hop_length / sr

    fig = _new_figure(8.0, min(8.0, 2.5 + 0.05 * n_atoms))
    (ax,) = _panels(fig, 1)
    image = ax.imshow(db.T, origin="lower", aspect="auto", cmap=_CMAP, vmin=-float(top_db), vmax=0.0,
                      interpolation="nearest",
                      extent=(-frame_s / 2, (n_frames - 0.5) * frame_s, -0.5, n_atoms - 0.5))
    if boundaries is not None:
        for b in boundaries:
            ax.axhline(b - 0.5, color="cyan", linewidth=1.0)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("atom")
    _colorbar(fig, image, [ax], "dB re max")
    if title is not None:
        ax.set_title(title)
    _save(fig, path, overwrite)
    return fig


def plot_block_usage(model, x, path=None, *, sr=None, top=None):
    """Plot which speaker blocks a fitted :class:`~pse_nmf.USM` uses on an input.

    Two panels: the per-frame block usage (speakers x frames, from
    :meth:`~pse_nmf.USM.block_usage`) and the utterance-level block weights (from
    :meth:`~pse_nmf.USM.block_weights`).

    Parameters
    ----------
    model : USM
        A fitted model.
    x : array-like of shape (n_samples,) or (n_frames, n_bins)
    path : str, path-like or None
        Where to save the figure (format from the suffix); None: do not save.
    sr : int or None
        Rate of ``x``.
    top : int or None
        Show only the ``top`` most used speakers (None: all).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    per_block, blocks = model._block_activations(x, sr, False)
    mass = np.zeros((per_block.shape[0], len(model.speakers_)))
    mass[:, blocks] = per_block
    frame_total = mass.sum(axis=1, keepdims=True)
    usage = np.divide(mass, frame_total, out=np.zeros_like(mass), where=frame_total > 0)
    weights = mass.sum(axis=0)
    weights = weights / weights.sum() if weights.sum() > 0 else weights
    order = np.argsort(-weights, kind="stable")
    if top is not None:
        order = order[: int(top)]
    names = [model.speakers_[i] for i in order]
    fig = Figure(figsize=(10, 1.5 + 0.25 * len(order)))
    FigureCanvasAgg(fig)
    ax_u, ax_w = fig.subplots(1, 2, gridspec_kw={"width_ratios": [4, 1]}, sharey=True)
    hop_s = model.hop_length / model.sr
    extent = (0, usage.shape[0] * hop_s, len(order) - 0.5, -0.5)
    im = ax_u.imshow(usage[:, order].T, aspect="auto", origin="upper", extent=extent, vmin=0, vmax=1,
                     cmap="magma", interpolation="nearest")
    ax_u.set_yticks(np.arange(len(order)))
    ax_u.set_yticklabels(names, fontsize=7)
    ax_u.set_xlabel("time (s)")
    ax_u.set_title("block usage per frame")
    fig.colorbar(im, ax=ax_u, fraction=0.03, pad=0.01, label="share")
    ax_w.barh(np.arange(len(order)), weights[order], color="tab:blue")
    ax_w.set_xlabel("share")
    ax_w.set_title("block weights")
    fig.tight_layout()
    if path is not None:
        fig.savefig(Path(path))
    return fig
