"""SpeakerEmbedding: a small Siamese network trained on noisy pairs; speaker groups by k-means for model selection."""

from __future__ import annotations

import hashlib
import json
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._persistence import ModelFileError, ModelIOMixin, register_estimator
from ._base import _seed, _torch_threads
from ._compact import CompactMaskNet, band_matrix
from ._engine import DynamicMixer, cosine_schedule, fit_loop
from ._experts import segment_means

__all__ = ["SpeakerEmbedding"]


class EmbeddingNet(nn.Module):
    """Log band features (CompactMaskNet's, level-free), causal conv, GRU, mean over frames, linear, unit norm."""

    floor = CompactMaskNet.floor
    alpha = CompactMaskNet.alpha
    _level = CompactMaskNet._level
    band_powers = CompactMaskNet.band_powers
    features = CompactMaskNet.features  # the specialists' features, computed the same way

    def __init__(self, n_bins, sr, hop_length, n_linear=64, n_erb=32, channels=64, hidden_size=64, dim=32,
                 norm_seconds=3.0):
        super().__init__()
        self.sr, self.hop_length, self.norm_seconds = int(sr), int(hop_length), float(norm_seconds)
        W = band_matrix(int(n_bins), self.sr, int(n_linear), int(n_erb))
        self.register_buffer("compress", torch.tensor(W.T, dtype=torch.float32), persistent=False)
        n_bands = int(n_linear) + int(n_erb)
        self.conv = nn.Conv1d(n_bands, channels, kernel_size=3)
        self.act = nn.PReLU(channels)
        self.gru = nn.GRU(channels, hidden_size, batch_first=True)
        self.proj = nn.Linear(hidden_size, dim)
        self.scale = nn.Parameter(torch.tensor(10.0))  # the Siamese score: sigmoid(scale * cos + offset)
        self.offset = nn.Parameter(torch.tensor(-5.0))

    def frame_states(self, f):
        x = self.act(self.conv(nn.functional.pad(f.transpose(1, 2), (2, 0))))
        return self.gru(x.transpose(1, 2))[0]

    def embed_features(self, f):
        """Unit-norm embeddings (batch, dim) of features (batch, T, bands)."""
        return nn.functional.normalize(self.proj(self.frame_states(f).mean(dim=1)), dim=-1)

    def forward(self, mag):
        return self.embed_features(self.features(mag))


class SpeakerGate(nn.Module):
    """A gate for :class:`SparseMixtureOfExperts`: each segment goes to the nearest speaker-group centroid."""

    def __init__(self, net, centroids):
        super().__init__()
        self.net = net
        self.register_buffer("centroids", torch.as_tensor(np.asarray(centroids), dtype=torch.float32))

    def segment_logits(self, f, seg_frames):
        h = segment_means(self.net.frame_states(f), seg_frames)
        e = nn.functional.normalize(self.net.proj(h), dim=-1)
        return 10.0 * e @ self.centroids.T


@register_estimator
class SpeakerEmbedding(ModelIOMixin, BaseEstimator):
    r"""Noise-robust speaker embedding: a small Siamese network trained on noisy pairs.

    Sivaraman and Kim's speaker-informed selection [1]_: the embedding of
    the *noisy* input picks the specialist of the nearest group of training
    speakers, so no clean speech of the user is needed (zero-shot). The
    network reads the specialists' own level-free log band features
    (:class:`~pse_nmf.neural.CompactEnhancer`'s), a causal convolution
    over three frames, a GRU, the mean over the frames and a linear layer to
    a unit vector of ``dim``. Training (``fit``, in the engine's
    ``fit_loop``): each batch holds ``speakers_per_batch`` speakers with two
    utterances each, every one a 3 s segment mixed on the fly with noise
    (:class:`~pse_nmf.neural._engine.DynamicMixer`, SNR uniform in
    ``snr_range``), and every pair of the batch is scored
    :math:`\sigma(w \cos(e_i, e_j) + b)` (learned :math:`w, b`) with binary
    cross-entropy against same / different speaker: the Siamese objective on
    noisy pairs, so that the embedding learns to ignore the noise (our
    choice of the pair loss; the paper's network and loss differ in
    detail). Validation (early stopping): the ROC AUC of same / different
    on pairs of held-out speakers' noisy utterances.

    :meth:`cluster_speakers` groups speakers by k-means on their mean
    embeddings (of their clean recordings; our choice), and keeps the unit
    centroids for :meth:`predict_group` and for
    ``SparseMixtureOfExperts(partition="speaker")``.

    Parameters
    ----------
    channels, hidden_size, dim : int, default=64, 64, 32
    speakers_per_batch : int, default=16
    batches_per_epoch : int, default=30
    max_epochs : int, default=10
    learning_rate : float, default=3e-3
    snr_range : (float, float), default=(-5.0, 15.0)
    segment_seconds : float, default=3.0
    validation_fraction : float, default=0.1
        Share of the speakers held out when ``fit`` gets no ``validation``.
    patience : int, default=5
    sr, n_fft, hop_length, n_linear, n_erb : int
        The specialists' STFT and band layout.
    n_threads : int or None, default=1
    random_state : int, RandomState instance or None
    verbose : int, default=0

    Attributes
    ----------
    module_ : EmbeddingNet
    centroids_ : ndarray of shape (n_groups, dim) or None
        After :meth:`cluster_speakers`.
    history_ : list of dict
    best_loss_ : float
        Best validation AUC.

    References
    ----------
    .. [1] A. Sivaraman and M. Kim, "Zero-shot personalized speech
       enhancement through speaker-informed model selection", WASPAA 2021.
    """

    _parameter_constraints = {
        "channels": [Interval(numbers.Integral, 1, None, closed="left")],
        "hidden_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "speakers_per_batch": [Interval(numbers.Integral, 2, None, closed="left")],
        "batches_per_epoch": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "snr_range": [tuple, list],
        "segment_seconds": [Interval(numbers.Real, 0, None, closed="neither")],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "patience": [Interval(numbers.Integral, 1, None, closed="left")],
        "sr": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_fft": [Interval(numbers.Integral, 2, None, closed="left")],
        "hop_length": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_linear": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_erb": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_threads": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }
    _fitted_scalars = ("n_features_in_", "best_loss_")

    def __init__(self, channels=64, hidden_size=64, dim=32, speakers_per_batch=16, batches_per_epoch=30, max_epochs=10,
                 learning_rate=3e-3, snr_range=(-5.0, 15.0), segment_seconds=3.0, validation_fraction=0.1, patience=5,
                 sr=16000, n_fft=512, hop_length=128, n_linear=64, n_erb=32, n_threads=1, random_state=None,
                 verbose=0):
        self.channels = channels
        self.hidden_size = hidden_size
        self.dim = dim
        self.speakers_per_batch = speakers_per_batch
        self.batches_per_epoch = batches_per_epoch
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.snr_range = snr_range
        self.segment_seconds = segment_seconds
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.sr = sr
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_linear = n_linear
        self.n_erb = n_erb
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    def _new_module(self, seed=0):
        torch.manual_seed(seed)
        return EmbeddingNet(self.n_fft // 2 + 1, self.sr, self.hop_length, self.n_linear, self.n_erb, self.channels,
                            self.hidden_size, self.dim)

    def _reader(self):
        from ._generalist import CompactEnhancer

        return CompactEnhancer(sr=self.sr, n_fft=self.n_fft, hop_length=self.hop_length)

    def _speakers(self, source, name):
        groups = self._reader()._grouped(source, None, False, name)
        groups = {g: [y for y in ys if np.any(y)] for g, ys in groups.items()}
        return {g: ys for g, ys in groups.items() if ys}

    def _mag(self, x):
        win = torch.hann_window(self.n_fft, periodic=True)
        X = torch.stft(x, self.n_fft, self.hop_length, window=win, center=True, pad_mode="constant",
                       return_complex=True)
        return torch.abs(X).transpose(1, 2)

    # -- training -------------------------------------------------------------------------------------------
    def fit(self, speech, noise, *, validation=None, checkpoint=None, resume=False):
        """Train on noisy pairs of the speakers of ``speech`` (a folder ``<speaker>/<file>`` or a mapping).

        Parameters
        ----------
        speech : folder or mapping speaker -> recordings
            At least 2 speakers with 2 recordings.
        noise : noise recordings (folder, list, mapping)
        validation : folder or mapping speaker -> recordings, or None
            Held-out speakers for the validation AUC; None holds out
            ``validation_fraction`` of ``speech``'s speakers.
        checkpoint : path or None
        resume : bool, default=False

        Returns
        -------
        self
        """
        self._validate_params()
        rng = check_random_state(self.random_state)
        speakers = self._speakers(speech, "speech")
        speakers = {g: ys for g, ys in speakers.items() if len(ys) >= 2}
        if len(speakers) < 2:
            raise ValueError("SpeakerEmbedding.fit needs at least 2 speakers with 2 non-silent recordings each, got "
                             f"{len(speakers)}: give speech as a folder of speaker folders or a mapping")
        noise_recs = [y for ys in self._reader()._grouped(noise, None, False, "noise").values() for y in ys
                      if np.any(y)]
        if not noise_recs:
            raise ValueError("the noise recordings are all silent (zeros): nothing to mix")
        init_seed, data_seed = _seed(rng), _seed(rng)
        names = sorted(speakers)
        if validation is None:
            n_valid = 0
            if self.validation_fraction > 0 and len(names) >= 4:
                n_valid = max(2, int(round(self.validation_fraction * len(names))))
            held = set(rng.permutation(names)[:n_valid].tolist())
            valid = {g: speakers[g] for g in names if g in held}
            train = {g: speakers[g] for g in names if g not in held}
        else:
            train, valid = speakers, self._speakers(validation, "validation speech")
        segment = max(int(round(self.segment_seconds * self.sr)), self.n_fft)
        all_recs = [y for ys in train.values() for y in ys]
        mixer = DynamicMixer(all_recs, noise_recs, segment, tuple(float(v) for v in self.snr_range), data_seed)
        train_names = sorted(train)
        index, k = {}, 0
        for g in train_names:
            index[g] = list(range(k, k + len(train[g])))
            k += len(train[g])
        p = min(self.speakers_per_batch, len(train_names))

        def batches(epoch):
            r = np.random.RandomState([data_seed, int(epoch)])
            for _ in range(self.batches_per_epoch):
                chosen = r.choice(len(train_names), size=p, replace=False)
                xs, labels = [], []
                for c in chosen:
                    for j in r.choice(index[train_names[c]], size=2, replace=False):
                        xs.append(mixer.example(mixer.speech[j], r)[0])
                        labels.append(c)
                yield torch.from_numpy(np.stack(xs)), torch.tensor(labels)

        vpairs = self._validation_set(valid, noise_recs, segment, data_seed) if len(valid) >= 2 else None
        self.module_ = self._new_module(init_seed)
        self.n_features_in_ = self.n_fft // 2 + 1
        self.centroids_ = None
        module = self.module_
        opt = torch.optim.Adam(module.parameters(), lr=self.learning_rate)
        validate = (lambda: self._auc(module, *vpairs)) if vpairs is not None else None
        with _torch_threads(self.n_threads):
            result = fit_loop(module, opt, batches=batches, loss=self._pair_loss, validate=validate,
                              mode="max" if validate else "min", max_epochs=self.max_epochs, patience=self.patience,
                              lr_factor=lambda e: cosine_schedule(e, self.max_epochs),
                              checkpoint=checkpoint, resume=resume, fingerprint=self._fingerprint(train, valid),
                              name=type(self).__name__, verbose=self.verbose, n_batches=self.batches_per_epoch)
        self.history_ = [{"epoch": h["epoch"], "train_loss": h["train_loss"],
                          "valid_loss": h["score"] if validate else None, "dur": h["dur"]} for h in result.history]
        self.best_loss_ = float(result.best_score)
        return self

    def _pair_loss(self, module, batch):
        x, labels = batch
        e = module(self._mag(x))
        cos = e @ e.T
        same = (labels[:, None] == labels[None, :]).to(cos.dtype)
        off = ~torch.eye(len(labels), dtype=torch.bool)
        logits = module.scale * cos + module.offset
        # same-speaker pairs are few (1 in 2p - 1): weigh them as much as the different ones
        w = torch.where(same.bool(), 0.5 / same[off].sum(), 0.5 / (1 - same)[off].sum())
        bce = nn.functional.binary_cross_entropy_with_logits(logits[off], same[off], weight=w[off], reduction="sum")
        return bce * len(labels), len(labels)

    def _validation_set(self, valid, noise_recs, segment, seed):
        """Noisy validation segments (one per utterance, ``segment`` samples, drawn once) and speaker labels."""
        names = sorted(valid)
        recs = [y for g in names for y in valid[g]]
        labels = [i for i, g in enumerate(names) for _ in valid[g]]
        mixer = DynamicMixer(recs, noise_recs, segment, tuple(float(v) for v in self.snr_range), seed)
        r = np.random.RandomState([seed, 2**31 - 2])
        x = np.stack([mixer.example(y, r)[0] for y in mixer.speech])
        return torch.from_numpy(x), np.asarray(labels)

    def _auc(self, module, x, labels):
        with torch.no_grad():
            e = torch.cat([module(self._mag(x[i : i + 32])) for i in range(0, len(x), 32)])
        return pair_auc(e.numpy(), labels)

    def _fingerprint(self, train, valid):
        h = hashlib.sha1()
        params = {k: v for k, v in self.get_params().items() if k not in ("verbose", "n_threads")}
        h.update(json.dumps(params, sort_keys=True, default=str).encode())
        for part in (train, valid):
            for g in sorted(part):
                h.update(g.encode())
                h.update(str([y.size for y in part[g]]).encode())
        return h.hexdigest()

    # -- use ------------------------------------------------------------------------------------------------------
    def transform(self, waveforms):
        """Unit embeddings (n, dim) of waveforms at the model's rate (a list, or one waveform)."""
        check_is_fitted(self)
        if isinstance(waveforms, np.ndarray) and waveforms.ndim == 1:
            waveforms = [waveforms]
        out = []
        self.module_.eval()
        with torch.no_grad(), _torch_threads(self.n_threads):
            for y in waveforms:
                y = np.ascontiguousarray(y, dtype=np.float32)
                if y.size < self.n_fft:
                    raise ValueError(f"a waveform of {y.size} samples is shorter than one STFT frame ({self.n_fft})")
                out.append(self.module_(self._mag(torch.from_numpy(y)[None]))[0].numpy())
        return np.stack(out)

    def cluster_speakers(self, speech, n_groups, random_state=0):
        """Group speakers by k-means on their mean embeddings; keeps the unit centroids in ``centroids_``.

        Parameters
        ----------
        speech : folder or mapping speaker -> recordings
        n_groups : int
        random_state : int

        Returns
        -------
        dict of str to int
            Speaker -> group (0 .. n_groups - 1).
        """
        from sklearn.cluster import KMeans

        check_is_fitted(self)
        speakers = self._speakers(speech, "speech")
        if len(speakers) < n_groups:
            raise ValueError(f"{len(speakers)} speakers cannot make {n_groups} groups")
        names = sorted(speakers)
        means = np.stack([self.transform(speakers[g]).mean(axis=0) for g in names])
        means /= np.linalg.norm(means, axis=1, keepdims=True)
        km = KMeans(n_clusters=n_groups, n_init=10, random_state=random_state).fit(means)
        c = km.cluster_centers_
        self.centroids_ = (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)
        return {g: int(k) for g, k in zip(names, km.labels_)}

    def predict_group(self, waveforms):
        """Nearest centroid (index) of each waveform's embedding."""
        if getattr(self, "centroids_", None) is None:
            raise ValueError("no speaker groups yet: call cluster_speakers first")
        return np.argmax(self.transform(waveforms) @ self.centroids_.T, axis=1)

    def gate_module(self):
        """The gate of ``SparseMixtureOfExperts(partition="speaker")``: nearest centroid per segment."""
        if getattr(self, "centroids_", None) is None:
            raise ValueError("the embedding has no speaker groups: call cluster_speakers first")
        return SpeakerGate(self.module_, self.centroids_)

    # -- persistence --------------------------------------------------------------------------------------------
    def _extra_arrays(self):
        arrays = {f"weight:{k}": v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()}
        if getattr(self, "centroids_", None) is not None:
            arrays["groups:centroids"] = np.asarray(self.centroids_, dtype=np.float32)
        return arrays

    def _load_extra(self, arrays):
        module = self._new_module()
        weights = {k[len("weight:"):]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
                   if k.startswith("weight:")}
        try:
            module.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(f"the saved weights do not fit SpeakerEmbedding's settings: {exc}") from exc
        module.eval()
        self.module_ = module
        c = arrays.get("groups:centroids")
        if c is not None and (c.ndim != 2 or c.shape[1] != self.dim):
            raise ModelFileError(f"the saved centroids have shape {c.shape}, expected (n_groups, {self.dim})")
        self.centroids_ = None if c is None else np.array(c)
        self.history_ = []


def pair_auc(embeddings, labels):
    """ROC AUC of the cosine similarity for same- against different-speaker pairs (0.5 = chance)."""
    from sklearn.metrics import roc_auc_score

    e = np.asarray(embeddings, dtype=np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    labels = np.asarray(labels)
    iu = np.triu_indices(len(labels), k=1)
    sims = (e @ e.T)[iu]
    same = (labels[:, None] == labels[None, :])[iu]
    if same.all() or not same.any():
        raise ValueError("pair_auc needs both same- and different-speaker pairs")
    return float(roc_auc_score(same, sims))
