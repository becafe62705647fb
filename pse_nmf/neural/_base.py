"""Base of the neural mask estimators: one training loop, one inference path.

skorch's manners: ``__init__`` stores flat hyperparameters; ``fit`` builds
the network (``module_``), its optimizer (``optimizer_``) and the per-epoch
record (``history_``). The network predicts a magnitude mask in [0, 1] on
STFT frames (n_frames, n_bins) from :func:`pse_nmf.audio.stft`, so ``denoise``,
``separate`` and ``transform`` behave exactly as for the NMF estimators
(:class:`pse_nmf.audio._mixin.AudioMixin`). NumPy in, NumPy out.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

from .._persistence import ModelFileError, ModelIOMixin
from ..audio._mixin import AudioMixin, load_recordings_list
from ..audio._stft import ratio_mask, stft
from ..datasets._tasks import _as_groups, _SilentExcerptError, mix_at_snr
from ._engine import fit_loop

__all__ = ["BaseNeuralEnhancer"]

_GRAD_CLIP = 5.0  # GRUs occasionally take huge steps early on; clipping the norm keeps Adam stable


@contextmanager
def _torch_threads(n):
    """Run torch with ``n`` intra-op threads (None: leave it), restoring the setting after."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _seed(rng):
    return int(rng.randint(np.iinfo(np.int32).max))


def _segments(recordings, length, min_length):
    """Cut waveforms into pieces of ``length`` samples; the last piece is kept if >= ``min_length``.

    Silent pieces (all zeros) are dropped: they have no SNR to mix at.
    """
    out = []
    for y in recordings:
        for start in range(0, y.size, length):
            piece = y[start : start + length]
            if piece.size >= min_length and np.any(piece):
                out.append(piece)
    return out


def _batch(pairs, device):
    """Zero-pad tuples of (n_frames, ...) arrays to one length; weights mark real frames.

    ``pairs``: tuples of arrays sharing their first axis (frames), usually
    (magnitudes, target mask). Returns one padded tensor per tuple position,
    then the weights (batch, n_frames, 1). Give the weights to the network
    too (``module(V, W)``): its features are then normalised over the real
    frames only, so a short segment is seen as it would be alone (before,
    the padding lowered its mean magnitude and shifted all its log features).
    """
    n_frames = max(p[0].shape[0] for p in pairs)
    out = []
    for k in range(len(pairs[0])):
        A = np.zeros((len(pairs), n_frames) + pairs[0][k].shape[1:], np.float32)
        for i, p in enumerate(pairs):
            A[i, : p[k].shape[0]] = p[k]
        out.append(torch.from_numpy(A).to(device))
    W = np.zeros((len(pairs), n_frames, 1), np.float32)
    for i, p in enumerate(pairs):
        W[i, : p[0].shape[0]] = 1
    out.append(torch.from_numpy(W).to(device))
    return tuple(out)


def _mask_mse_loss(module, tensors):
    """The default batch loss: mask MSE on real frames; (sum, number of terms)."""
    V, M, W = tensors
    return _masked_mse(module(V, W), M, W)


def _validation_split(items, fraction, segment_seconds, rng, what):
    """Shuffle ``items`` with ``rng`` and split off ``fraction`` of them (at least one, never all).

    Returns ``(valid, train)``; ``what`` names the audio in the error ("speech", "noisy").
    """
    n_valid = 0
    if fraction > 0:
        if len(items) < 2:
            raise ValueError(
                f"validation_fraction={fraction} needs at least 2 {what} segments of "
                f"segment_seconds={segment_seconds}, got {len(items)}: give more {what} audio, shorter "
                "segments, or validation_fraction=0"
            )
        n_valid = min(max(1, int(round(fraction * len(items)))), len(items) - 1)
    order = rng.permutation(len(items))
    return [items[i] for i in order[:n_valid]], [items[i] for i in order[n_valid:]]


def _masked_mse(pred, target, weight):
    """Sum of squared errors over real frames, and the number of terms."""
    return (torch.square(pred - target) * weight).sum(), weight.sum() * pred.shape[-1]


class BaseNeuralEnhancer(AudioMixin, TransformerMixin, ModelIOMixin, BaseEstimator):
    r"""Base class: a mask network trained by mixing speech and noise on the fly.

    Subclasses store their hyperparameters in ``__init__`` and implement
    ``_build_module(n_bins) -> torch.nn.Module`` mapping magnitudes
    (batch, n_frames, n_bins) to a mask of the same shape in [0, 1].

    Training objective (mask MSE): the network :math:`f_\theta` sees the
    mixture magnitudes :math:`|Y|` and is fitted to the ideal ratio mask of
    the speech :math:`S` and the noise actually added :math:`N`,

    .. math::

        \min_\theta \frac{1}{TK} \sum_{t,k}
        \left(f_\theta(|Y|)_{t,k} - \frac{|S_{t,k}|}{|S_{t,k}| + |N_{t,k}|}\right)^2

    with Adam. The enhanced STFT is :math:`f_\theta(|Y|) \odot Y`.

    Batches: segments are cut from the recordings (the last piece of each
    recording is shorter) and zero-padded to a batch's longest; the network
    is given the padding's weights, so its level normalisation (the mean
    magnitude of :func:`~pse_nmf.neural._models.log_features`) is taken over
    the real frames only and a short segment is seen exactly as alone.

    Early stopping: the monitored loss is the validation loss when
    ``validation_fraction > 0`` (a fixed set of mixtures drawn once from
    held-out speech segments), else the training loss. Training stops when it
    has not improved by more than ``tol`` for ``patience`` epochs, and the
    weights of the best epoch are kept. Running out of ``max_epochs`` first
    raises a :class:`~sklearn.exceptions.ConvergenceWarning`.
    """

    # AudioMixin's front end: magnitude frames; the _mask hook gives the network's mask, applied as is (one pass)
    spectrum_power = 1.0

    _fitted_arrays = ()
    _fitted_scalars = ("n_features_in_", "n_epochs_", "best_epoch_", "best_loss_")

    _base_constraints = {
        "snr_range": [tuple, list],
        "segment_seconds": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "patience": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "sr": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_fft": [Interval(numbers.Integral, 16, None, closed="left")],
        "hop_length": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [str],
        "n_threads": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # -- subclass hook ----------------------------------------------------------------------------
    def _build_module(self, n_bins):
        raise NotImplementedError

    # -- building ---------------------------------------------------------------------------------
    def _device(self):
        try:
            return torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device={self.device!r} is not a torch device: {exc}") from exc

    def _new_module(self, n_bins, seed):
        """Build the network with weights drawn from ``seed``, leaving torch's global RNG as it was."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self._build_module(n_bins)
        return module.to(self._device())

    def _check_snr_range(self):
        lo_hi = tuple(self.snr_range)
        if len(lo_hi) != 2 or not all(isinstance(v, numbers.Real) and np.isfinite(v) for v in lo_hi) \
                or lo_hi[0] > lo_hi[1]:
            raise ValueError(f"snr_range must be (low_db, high_db) with low_db <= high_db, got {self.snr_range!r}")
        return float(lo_hi[0]), float(lo_hi[1])

    # -- data -------------------------------------------------------------------------------------
    def _recording_list(self, source, sr, downmix, name, min_length):
        """Recordings as a flat list of float32 arrays at ``self.sr``.

        ``source``: a folder (searched recursively, so the dev layout
        ``<group>/<file>`` works), a mapping group -> recordings, a list of
        waveforms or paths, or one waveform.
        """
        self._check_audio_params()
        if isinstance(source, Mapping):
            source = [item for items in _as_groups(source, name=name).values() for item in items]
        return load_recordings_list(source, sr=self.sr, sr_in=sr, downmix=downmix, min_length=min_length,
                                    name=name)

    def _magnitude(self, y):
        return np.abs(stft(y, n_fft=self.n_fft, hop_length=self.hop_length)).astype(np.float32)

    def _mix_pair(self, speech, speech_mag, noises, snr_range, rng):
        """One training example: mixture magnitudes and the ideal ratio mask, (n_frames, n_bins) each."""
        for _ in range(10):
            noise = noises[rng.randint(len(noises))]
            snr = rng.uniform(*snr_range)
            try:
                mixture, added = mix_at_snr(speech, noise, snr, random_state=rng)
                break
            except _SilentExcerptError:
                continue  # a silent stretch of this noise: draw again
        else:
            raise ValueError("the noise recordings gave silent excerpts 10 times in a row: too much digital silence")
        return self._magnitude(mixture), ratio_mask(speech_mag, self._magnitude(added), power=1.0)

    # -- fitting ----------------------------------------------------------------------------------
    def fit(self, speech, noise, *, sr=None, downmix=False):
        """Train a generalist mask network on speech mixed with noise on the fly.

        The speech is cut once into segments of ``segment_seconds``; a
        fraction ``validation_fraction`` of them, mixed once, is the
        validation set. Every epoch mixes each training segment anew with a
        random noise recording (random excerpt, see
        :func:`pse_nmf.datasets.mix_at_snr`) at an SNR drawn uniformly from
        ``snr_range``, so the network rarely sees the same mixture twice.

        Parameters
        ----------
        speech : folder, mapping, list of waveforms or paths, or a waveform
            Clean speech. A folder is searched recursively (the development
            layout ``speech/<speaker>/<utt>.flac`` works); a mapping is
            group -> recordings, as for :func:`pse_nmf.datasets.load_recordings`.
        noise : same forms as ``speech``
            Noise recordings, any length (shorter ones are tiled).
        sr : int or None
            Rate of waveforms given as arrays; None means ``self.sr``.
        downmix : bool, default=False
            Average multichannel recordings instead of refusing them.

        Returns
        -------
        self
        """
        self._validate_params()
        snr_range = self._check_snr_range()
        device = self._device()
        speech_recs = self._recording_list(speech, sr, downmix, "speech", self.n_fft)
        noise_recs = self._recording_list(noise, sr, downmix, "noise", 1)
        noise_recs = [y for y in noise_recs if np.any(y)]
        if not noise_recs:
            raise ValueError("the noise recordings are all silent (zeros): nothing to mix")
        segments = _segments(speech_recs, max(int(round(self.segment_seconds * self.sr)), self.n_fft), self.n_fft)
        if not segments:
            raise ValueError("the speech recordings are silent (all zeros): nothing to learn from")
        rng = check_random_state(self.random_state)
        valid, train = _validation_split(segments, self.validation_fraction, self.segment_seconds, rng, "speech")
        train_mags = [self._magnitude(s) for s in train]
        valid_pairs = [self._mix_pair(s, self._magnitude(s), noise_recs, snr_range, rng) for s in valid]

        def make_train_pairs(epoch_rng):
            return [self._mix_pair(s, m, noise_recs, snr_range, epoch_rng) for s, m in zip(train, train_mags)]

        self.n_features_in_ = self._n_bins()
        self.module_ = self._new_module(self.n_features_in_, _seed(rng))
        self.optimizer_ = torch.optim.Adam(self.module_.parameters(), lr=self.learning_rate)
        with _torch_threads(self.n_threads):
            self._train(make_train_pairs, valid_pairs, rng, device)
        return self

    def _train(self, make_train_pairs, valid_pairs, rng, device, loss_fn=_mask_mse_loss):
        """Fit ``self.module_`` in place with the engine's loop (:func:`~pse_nmf.neural._engine.fit_loop`).

        Adam at a constant learning rate, early stopping on the validation
        loss (or the training loss without validation). ``loss_fn(module,
        tensors) -> (loss_sum, n_terms)`` on the output of :func:`_batch`
        for a batch of examples; the default is the mask MSE on
        (magnitudes, mask) pairs. The monitored loss is
        ``sum(loss_sum) / sum(n_terms)`` over the epoch.
        """
        shuffle = torch.Generator().manual_seed(_seed(rng))

        def batches(epoch):
            pairs = make_train_pairs(rng)
            order = torch.randperm(len(pairs), generator=shuffle).tolist()
            for i in range(0, len(order), self.batch_size):
                yield _batch([pairs[j] for j in order[i : i + self.batch_size]], device)

        validate = (lambda: self._evaluate(valid_pairs, device, loss_fn)) if valid_pairs else None
        result = fit_loop(
            self.module_, self.optimizer_, batches=batches, loss=loss_fn, validate=validate, mode="min",
            max_epochs=self.max_epochs, patience=self.patience, tol=getattr(self, "tol", 0.0), grad_clip=_GRAD_CLIP,
            name=type(self).__name__, verbose=self.verbose,
        )
        self.history_ = [{"epoch": h["epoch"], "train_loss": h["train_loss"],
                          "valid_loss": h["score"] if valid_pairs else None, "dur": h["dur"]}
                         for h in result.history]
        self.n_epochs_ = len(self.history_)
        self.best_epoch_ = int(result.best_epoch)
        self.best_loss_ = float(result.best_score)
        if not result.stopped:
            warnings.warn(
                f"Maximum number of epochs {self.max_epochs} reached before early stopping "
                f"(patience={self.patience}). Increase max_epochs to improve convergence.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _evaluate(self, pairs, device, loss_fn=_mask_mse_loss):
        self.module_.eval()
        total, count = 0.0, 0.0
        with torch.no_grad():
            for i in range(0, len(pairs), self.batch_size):
                loss_sum, n = loss_fn(self.module_, _batch(pairs[i : i + self.batch_size], device))
                total += float(loss_sum)
                count += float(n)
        return total / count

    # -- inference --------------------------------------------------------------------------------
    def _predict_mask(self, V):
        """Mask in [0, 1] of shape (n_frames, n_bins) for magnitude frames ``V``."""
        module = self.module_
        module.eval()
        with torch.no_grad(), _torch_threads(self.n_threads):
            x = torch.as_tensor(np.asarray(V, dtype=np.float32), device=self._device())[None]
            return module(x)[0].cpu().numpy()

    def _mask(self, V):
        """AudioMixin's hook: the network's mask of frames ``V``, what ``denoise`` and ``separate`` apply."""
        return self._predict_mask(V).astype(V.dtype, copy=False)

    def predict_mask(self, X):
        """The network's mask for magnitude frames.

        Parameters
        ----------
        X : array-like of shape (n_frames, n_bins), non-negative
            STFT magnitudes of one recording (the mask depends on the whole
            sequence).

        Returns
        -------
        ndarray of shape (n_frames, n_bins)
            Values in [0, 1], dtype of ``X`` (float32 or float64).
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float32, np.float64], ensure_min_samples=1)
        check_non_negative(X, f"{type(self).__name__} (input X)")
        return self._predict_mask(X).astype(X.dtype, copy=False)

    def transform(self, X):
        """Speech estimate of each frame: ``X`` times the network's mask.

        Parameters
        ----------
        X : array-like of shape (n_frames, n_bins), non-negative
            STFT magnitudes (``|pse_nmf.audio.stft(x)|`` with this model's
            ``n_fft`` and ``hop_length``) of one recording.

        Returns
        -------
        ndarray of shape (n_frames, n_bins)
        """
        mask = self.predict_mask(X)
        X = np.asarray(X, dtype=mask.dtype)
        return X * mask

    # -- persistence ------------------------------------------------------------------------------
    def _extra_arrays(self):
        arrays = {f"weight:{k}": v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()}
        history = getattr(self, "history_", [])
        arrays["history:train_loss"] = np.array([h["train_loss"] for h in history], dtype=np.float64)
        arrays["history:valid_loss"] = np.array(
            [np.nan if h["valid_loss"] is None else h["valid_loss"] for h in history], dtype=np.float64
        )
        arrays["history:dur"] = np.array([h["dur"] for h in history], dtype=np.float64)
        return arrays

    def _load_extra(self, arrays):
        n_bins = self.n_features_in_
        if not isinstance(n_bins, int) or n_bins != self._n_bins():
            raise ModelFileError(f"n_features_in_={n_bins!r} does not fit n_fft={self.n_fft}")
        # the architecture comes from the saved hyperparameters; its fresh weights are replaced below
        module = self._new_module(n_bins, 0)
        weights = {}
        for key, value in arrays.items():
            if key.startswith("weight:"):
                if value.dtype.kind != "f" or not np.all(np.isfinite(value)):
                    raise ModelFileError(f"{key} holds non-finite or non-float values")
                weights[key[len("weight:"):]] = torch.from_numpy(np.array(value))
        try:
            module.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(f"the saved weights do not fit {type(self).__name__}'s settings: {exc}") from exc
        module.eval()
        self.module_ = module
        self.optimizer_ = None  # not saved: a loaded model predicts; refit to train again
        train = arrays.get("history:train_loss", np.zeros(0))
        valid = arrays.get("history:valid_loss", np.full(train.shape, np.nan))
        dur = arrays.get("history:dur", np.full(train.shape, np.nan))
        if not (train.shape == valid.shape == dur.shape and train.ndim == 1):
            raise ModelFileError("the saved training history is damaged (arrays of different lengths)")
        self.history_ = [
            {"epoch": i + 1, "train_loss": float(t), "valid_loss": None if np.isnan(v) else float(v), "dur": float(d)}
            for i, (t, v, d) in enumerate(zip(train, valid, dur))
        ]

