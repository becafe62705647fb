"""SparseMixtureOfExperts: specialists of the generalist's size and a small gate, one specialist run per segment."""

from __future__ import annotations

import hashlib
import json
import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._persistence import ModelFileError, ModelIOMixin, register_estimator
from ..audio._mixin import AudioMixin
from ._base import _seed, _torch_threads
from ._engine import DynamicMixer, cosine_schedule, fit_loop, fixed_mixtures, si_sdr

__all__ = ["SparseMixtureOfExperts"]

_VALID_SNRS = (-5.0, 0.0, 5.0)


# -- the networks ---------------------------------------------------------------------------------------
def run_expert(module, f, start=0, stop=None, state=(None, None)):
    """Masks of a :class:`CompactMaskNet` for frames ``[start, stop)`` of its features ``f`` (batch, T, bands).

    ``state`` = (h1, h2), the GRU states after frame ``start - 1`` (None: zeros). Returns the masks
    (batch, stop - start, n_bins) and the new state. Over the whole input from zeros it is exactly
    ``module(mag)``.
    """
    stop = f.shape[1] if stop is None else stop
    prev = f[:, start - 1 : start] if start > 0 else torch.zeros_like(f[:, :1])
    seg = torch.cat([prev, f[:, start:stop]], dim=1).transpose(1, 2)  # (batch, bands, n + 1)
    x = module.act(module.conv(seg))  # causal: frame t sees t - 1 and t
    h, h1 = module.gru1(x.transpose(1, 2), state[0])
    h, h2 = module.gru2(h, state[1])
    return module._head(h), (h1, h2)


def segment_means(z, seg_frames):
    """Mean of (batch, T, k) over consecutive segments of ``seg_frames`` frames (the last may be shorter)."""
    T = z.shape[1]
    n_seg = max(1, math.ceil(T / seg_frames))
    pad = n_seg * seg_frames - T
    counts = torch.full((n_seg,), float(seg_frames), dtype=z.dtype, device=z.device)
    counts[-1] = seg_frames - pad
    z = nn.functional.pad(z, (0, 0, 0, pad))
    return z.reshape(z.shape[0], n_seg, seg_frames, z.shape[2]).sum(dim=2) / counts[None, :, None]


class GateNet(nn.Module):
    """The gate: a causal GRU on the specialists' log band features and a linear layer to one logit per expert.

    A segment's logits are the mean of its frames' logits.
    """

    def __init__(self, n_bands, n_experts, hidden_size=16):
        super().__init__()
        self.gru = nn.GRU(n_bands, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, n_experts)

    def forward(self, f):
        h, _ = self.gru(f)
        return self.out(h)

    def segment_logits(self, f, seg_frames):
        return segment_means(self(f), seg_frames)


class MixtureNet(nn.Module):
    """Specialists and gate.

    In training mode the masks are mixed by the gate's softmax at ``temperature`` (every specialist
    runs); in eval mode each segment's mask comes from its argmax specialist only, the GRU states handed
    on from one segment's specialist to the next (the specialists share the generalist's initialisation).
    """

    def __init__(self, experts, gate, seg_frames):
        super().__init__()
        self.experts = nn.ModuleList(experts)
        self.gate = gate
        self.seg_frames = int(seg_frames)
        self.temperature = 1.0

    def features(self, mag):
        return self.experts[0].features(mag)

    def weights(self, logits):
        """Soft segment weights (batch, n_seg, K) at the current temperature."""
        return torch.softmax(logits / self.temperature, dim=-1)

    def choices(self, mag):
        """Specialist index of each segment (batch, n_seg) and the features."""
        f = self.features(mag)
        return torch.argmax(self.gate.segment_logits(f, self._seg(f)), dim=-1), f

    def _seg(self, f):
        return f.shape[1] if self.seg_frames <= 0 else self.seg_frames

    def forward(self, mag, weight=None):
        f = self.features(mag)
        seg = self._seg(f)
        logits = self.gate.segment_logits(f, seg)
        T = f.shape[1]
        if self.training:
            w = self.weights(logits).repeat_interleave(seg, dim=1)[:, :T]  # (batch, T, K)
            out = 0.0
            for k, expert in enumerate(self.experts):
                out = out + w[:, :, k : k + 1] * run_expert(expert, f)[0]
            return out
        return self.hard_masks(f, torch.argmax(logits, dim=-1), seg)

    def hard_masks(self, f, choice, seg):
        """Masks with one specialist per segment (``choice``: (batch, n_seg)).

        Consecutive equal choices run as one piece, each piece continuing the previous piece's GRU states.
        """
        out = []
        for b in range(f.shape[0]):
            fb, masks, state = f[b : b + 1], [], (None, None)
            c = choice[b].tolist()
            i = 0
            while i < len(c):
                j = i
                while j + 1 < len(c) and c[j + 1] == c[i]:
                    j += 1
                start, stop = i * seg, min((j + 1) * seg, fb.shape[1])
                m, state = run_expert(self.experts[c[i]], fb, start, stop, state)
                masks.append(m)
                i = j + 1
            out.append(torch.cat(masks, dim=1))
        return torch.cat(out, dim=0)


# -- the estimator ----------------------------------------------------------------------------------------
@register_estimator
class SparseMixtureOfExperts(AudioMixin, ModelIOMixin, BaseEstimator):
    r"""Sparse mixture of local experts: specialists of one size, a small gate, one specialist per segment.

    Sivaraman and Kim's model [1]_: the enhancement problem is cut into
    sub-problems (``partition``), one specialist per sub-problem, and a gate
    that reads the noisy input sends each segment to one specialist, so that
    the cost at test time is one specialist plus the gate. Training has the
    paper's three stages:

    1. **specialists**: each a :class:`~pse_nmf.neural.CompactEnhancer`
       trained on its sub-problem. ``fit`` does it for unfitted experts of
       ``partition="snr"`` (each on its own ``snr_range``); otherwise pass
       fitted experts. The shipped ones are the pretrained generalist
       fine-tuned on their partition for a few epochs
       (``benchmarks/train_experts.py``): the affordable version of
       training each from scratch, and it gives the specialists the same
       starting point, which the state hand-over below relies on;
    2. **gate** with the specialists frozen (``gate_epochs``): as in the
       paper, a sub-problem classifier (cross-entropy) where the partition
       can be read from the training example: for ``"snr"`` the label is the
       specialist whose ``snr_range`` holds the example's input SNR. For
       partitions that the waveform batch does not carry (``"gender"``) the
       label is the specialist with the best SI-SDR on the example (our
       choice: the gate then learns the oracle choice directly);
    3. **joint fine-tuning** (``joint_epochs``): specialists and gate
       trained together on the specialists' own loss, the masks mixed by the
       softmax of the gate's segment logits divided by a temperature that
       falls geometrically from ``temperature_start`` to
       ``temperature_end`` over the epochs (the paper's sparsity parameter),
       so the mixture ends as a hard choice.

    Both trained stages run in the training engine's ``fit_loop`` on
    :class:`~pse_nmf.neural._engine.DynamicMixer` batches, with early
    stopping on the validation SI-SDR of the **hard** (test-time) path.

    At test time the gate (a GRU of ``gate_hidden`` units on the
    specialists' own level-free log band features, so the features are
    computed once) scores each segment of ``segment_seconds`` by the mean
    of its frames' logits, and only the argmax specialist runs on it. The
    choice for a segment uses the whole segment (not causal within a
    segment: the latency of a streaming version would be one segment). On a
    change of specialist the new one continues from the GRU states of the
    previous one (our choice; the paper's specialists are feed-forward):
    starting it from zeros would cost its warm-up, and running every
    specialist to keep its state would cost all of them. With one segment
    (``segment_seconds=None``: the whole input) or equal choices, the output
    is exactly the chosen specialist's own.

    Parameters
    ----------
    experts : list of (str, CompactEnhancer)
        The specialists, all with the same STFT and band layout.
    partition : {"snr", "gender", "speaker"}, default="snr"
        What the specialists specialise in (for the gate's labels). With
        ``"speaker"`` the gate is ``embedding``'s nearest group centroid
        (Sivaraman and Kim 2021, :class:`~pse_nmf.neural.SpeakerEmbedding`)
        and nothing is trained here.
    embedding : SpeakerEmbedding or None
        Fitted, with ``n_groups_`` equal to the number of experts; for
        ``partition="speaker"`` only.
    gate_hidden : int, default=16
    segment_seconds : float or None, default=1.0
        Length of the segments of one choice; None: the whole input.
    gate_epochs, joint_epochs : int, default=3
    gate_learning_rate : float, default=3e-3
    learning_rate : float, default=3e-4
        Peak learning rate of the joint stage (cosine schedule).
    temperature_start, temperature_end : float, default=1.0, 0.01
    batch_size : int, default=32
    snr_range : (float, float), default=(-5.0, 15.0)
        SNRs of the gate's and joint stage's training mixtures.
    noise_augment : float, default=0.5
    n_threads : int or None, default=1
    random_state : int, RandomState instance or None
    verbose : int, default=0

    Attributes
    ----------
    module_ : MixtureNet
    n_experts_, n_features_in_ : int
    history_ : list of dict
        Per epoch of both stages: ``stage``, ``epoch``, ``train_loss``,
        ``valid_loss`` (validation SI-SDR in dB of the hard path), ``dur``.

    References
    ----------
    .. [1] A. Sivaraman and M. Kim, "Sparse mixture of local experts for
       efficient speech enhancement", Interspeech 2020.
    .. [2] A. Sivaraman and M. Kim, "Zero-shot personalized speech
       enhancement through speaker-informed model selection", WASPAA 2021.
    """

    _parameter_constraints = {
        "experts": [list],
        "partition": [StrOptions({"snr", "gender", "speaker"})],
        "embedding": [None, object],
        "gate_hidden": [Interval(numbers.Integral, 1, None, closed="left")],
        "segment_seconds": [None, Interval(numbers.Real, 0, None, closed="neither")],
        "gate_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "joint_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "gate_learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "temperature_start": [Interval(numbers.Real, 0, None, closed="neither")],
        "temperature_end": [Interval(numbers.Real, 0, None, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "snr_range": [tuple, list],
        "noise_augment": [Interval(numbers.Real, 0, 1, closed="both")],
        "n_threads": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }
    _fitted_scalars = ("n_experts_", "n_features_in_")

    def __init__(self, experts, partition="snr", embedding=None, gate_hidden=16, segment_seconds=1.0, gate_epochs=3,
                 joint_epochs=3, gate_learning_rate=3e-3, learning_rate=3e-4, temperature_start=1.0,
                 temperature_end=0.01, batch_size=32, snr_range=(-5.0, 15.0), noise_augment=0.5, n_threads=1,
                 random_state=None, verbose=0):
        self.experts = experts
        self.partition = partition
        self.embedding = embedding
        self.gate_hidden = gate_hidden
        self.segment_seconds = segment_seconds
        self.gate_epochs = gate_epochs
        self.joint_epochs = joint_epochs
        self.gate_learning_rate = gate_learning_rate
        self.learning_rate = learning_rate
        self.temperature_start = temperature_start
        self.temperature_end = temperature_end
        self.batch_size = batch_size
        self.snr_range = snr_range
        self.noise_augment = noise_augment
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    # -- members ------------------------------------------------------------------------------------------
    def _members(self):
        from ._generalist import CompactEnhancer

        if not isinstance(self.experts, (list, tuple)) or len(self.experts) == 0:
            raise ValueError("experts must be a non-empty list of (name, CompactEnhancer) pairs, got "
                             f"{self.experts!r}")
        members = []
        for item in self.experts:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
                raise ValueError(f"experts must be (name, estimator) pairs, got {item!r}")
            est = getattr(item[1], "estimator", item[1])  # a FrozenEstimator's inner model
            if not isinstance(est, CompactEnhancer):
                raise TypeError(f"expert {item[0]!r} is a {type(est).__name__}; the specialists must be "
                                "CompactEnhancer (they share the band features and hand GRU states over)")
            members.append((item[0], est))
        names = [n for n, _ in members]
        if len(set(names)) != len(names):
            raise ValueError(f"expert names must be unique, got {names}")
        ref = members[0][1]
        keys = ("sr", "n_fft", "hop_length", "n_linear", "n_erb", "conv_channels", "hidden_size", "hidden_size2")
        for name, est in members[1:]:
            diff = [k for k in keys if getattr(est, k) != getattr(ref, k)]
            if diff:
                raise ValueError(f"expert {name!r} differs from {members[0][0]!r} in {', '.join(diff)} "
                                 f"({', '.join(f'{k}={getattr(est, k)} vs {getattr(ref, k)}' for k in diff)}): "
                                 "the specialists must share sample rate, STFT and architecture")
        return members

    @property
    def sr(self):
        return self._members()[0][1].sr

    @property
    def n_fft(self):
        return self._members()[0][1].n_fft

    @property
    def hop_length(self):
        return self._members()[0][1].hop_length

    def _seg_frames(self):
        if self.segment_seconds is None:
            return 0
        return max(1, int(round(self.segment_seconds * self.sr / self.hop_length)))

    def _build(self, members, seed=0):
        torch.manual_seed(seed)
        modules = [est.module_ for _, est in members]
        if self.partition == "speaker":
            if self.embedding is None:
                raise ValueError('partition="speaker" needs embedding=<fitted SpeakerEmbedding>')
            check_is_fitted(self.embedding)
            n_groups = self.embedding.centroids_.shape[0]
            if n_groups != len(members):
                raise ValueError(f"the embedding has {n_groups} speaker groups, but there are {len(members)} "
                                 "experts: one expert per group")
            gate = self.embedding.gate_module()
        else:
            gate = GateNet(modules[0].n_bands, len(members), self.gate_hidden)
        return MixtureNet(modules, gate, self._seg_frames())

    # -- fitting ------------------------------------------------------------------------------------------
    def fit(self, speech, noise, *, validation=None, sr=None, downmix=False, checkpoint=None, resume=False):
        """Stages 1-3 (see the class docstring): specialists if unfitted, gate, joint fine-tuning.

        Parameters
        ----------
        speech, noise : as for :meth:`CompactEnhancer.fit`
        validation : (speech, noise) or None
            Validation audio (early stopping on the hard path's SI-SDR);
            None holds out 10 % of the speakers of ``speech``.
        sr : int or None
        downmix : bool, default=False
        checkpoint : path or None
            Stage checkpoints are written beside it (``<stem>.gate.npz``,
            ``<stem>.joint.npz``); ``resume=True`` continues from them.
        resume : bool, default=False

        Returns
        -------
        self
        """
        from pathlib import Path

        self._validate_params()
        members = self._members()
        lo, hi = (float(v) for v in self.snr_range)
        if not lo < hi:
            raise ValueError(f"snr_range must be (low, high) with low < high, got {self.snr_range!r}")
        rng = check_random_state(self.random_state)
        for name, est in members:  # stage 1
            if not hasattr(est, "module_"):
                if self.partition != "snr":
                    raise ValueError(f"expert {name!r} is not fitted: with partition={self.partition!r} fit the "
                                     "specialists on their partitions first (only 'snr' partitions here)")
                est.fit(speech, noise, validation=validation, sr=sr, downmix=downmix)
        self.n_features_in_ = members[0][1].n_features_in_
        self.n_experts_ = len(members)
        self.module_ = self._build(members, _seed(rng))
        self.history_ = []
        if self.partition == "speaker":
            return self

        ref = members[0][1]
        groups = ref._grouped(speech, sr, downmix, "speech")
        noise_recs = [y for ys in ref._grouped(noise, sr, downmix, "noise").values() for y in ys if np.any(y)]
        if not noise_recs:
            raise ValueError("the noise recordings are all silent (zeros): nothing to mix")
        data_seed = _seed(rng)
        if validation is None:
            names = sorted(groups)
            n_valid = min(max(1, int(round(0.1 * len(names)))), len(names) - 1) if len(names) > 1 else 0
            held = set(rng.permutation(names)[:n_valid].tolist())
            train = [y for g in names if g not in held for y in groups[g]]
            valid_speech, valid_noise = [y for g in names if g in held for y in groups[g]], noise_recs
        else:
            train = [y for ys in groups.values() for y in ys]
            valid_speech = [y for ys in ref._grouped(validation[0], sr, downmix, "validation speech").values()
                            for y in ys]
            valid_noise = [y for ys in ref._grouped(validation[1], sr, downmix, "validation noise").values()
                           for y in ys]
        segment = max(int(round(ref.segment_seconds * ref.sr)), ref.n_fft)
        mixer = DynamicMixer(train, noise_recs, segment, (lo, hi), data_seed, augment=self.noise_augment)
        valid = fixed_mixtures(valid_speech, valid_noise, _VALID_SNRS, data_seed) if valid_speech else []
        module = self.module_
        validate = (lambda: ref._validation_score(module, valid)) if valid else None
        stem = None if checkpoint is None else Path(checkpoint)

        def ckpt(stage):
            return None if stem is None else stem.with_name(f"{stem.stem}.{stage}{stem.suffix or '.npz'}")

        fp = self._fingerprint(train, noise_recs, valid, members)
        with _torch_threads(self.n_threads):
            if self.gate_epochs > 0:  # stage 2: the gate, specialists frozen
                for p in module.experts.parameters():
                    p.requires_grad_(False)
                opt = torch.optim.Adam(module.gate.parameters(), lr=self.gate_learning_rate)
                result = fit_loop(
                    module, opt, batches=lambda epoch: mixer.batches(epoch, self.batch_size),
                    loss=lambda m, batch: self._gate_loss(m, batch, members),
                    validate=validate, mode="max" if valid else "min", max_epochs=self.gate_epochs,
                    patience=self.gate_epochs, lr_factor=lambda e: cosine_schedule(e, self.gate_epochs, 0),
                    checkpoint=ckpt("gate"), resume=resume, fingerprint=fp + ":gate",
                    name=f"{type(self).__name__} gate", verbose=self.verbose,
                    n_batches=mixer.n_batches(self.batch_size))
                self._record("gate", result, valid)
                for p in module.experts.parameters():
                    p.requires_grad_(True)
            if self.joint_epochs > 0:  # stage 3: everything, the temperature annealed towards a hard choice
                opt = torch.optim.Adam(module.parameters(), lr=self.learning_rate)

                def batches(epoch):
                    module.temperature = self._temperature(epoch)
                    return mixer.batches(epoch, self.batch_size)

                result = fit_loop(
                    module, opt, batches=batches, loss=ref._batch_loss, validate=validate,
                    mode="max" if valid else "min", max_epochs=self.joint_epochs, patience=self.joint_epochs,
                    lr_factor=lambda e: cosine_schedule(e, self.joint_epochs, 0),
                    checkpoint=ckpt("joint"), resume=resume, fingerprint=fp + ":joint",
                    name=f"{type(self).__name__} joint", verbose=self.verbose,
                    n_batches=mixer.n_batches(self.batch_size))
                self._record("joint", result, valid)
                module.temperature = self._temperature(self.joint_epochs)
        module.eval()
        return self

    def _temperature(self, epoch):
        """Temperature of a joint epoch (from 1): geometric from ``temperature_start`` to ``temperature_end``."""
        if self.joint_epochs <= 1:
            return float(self.temperature_end)
        t = (epoch - 1) / (self.joint_epochs - 1)
        return float(self.temperature_start * (self.temperature_end / self.temperature_start) ** min(1.0, t))

    def _record(self, stage, result, valid):
        self.history_ += [{"stage": stage, "epoch": h["epoch"], "train_loss": h["train_loss"],
                           "valid_loss": h["score"] if valid else None, "dur": h["dur"]} for h in result.history]

    def _labels(self, module, x, s, f, members, ref):
        """Stage 2's target specialist of each example (see the class docstring)."""
        if self.partition == "snr":
            active = (s != 0).to(s.dtype)
            p_s = (s * s * active).sum(-1) / active.sum(-1).clamp(min=1.0)
            p_n = ((x - s) ** 2).mean(-1).clamp(min=1e-20)
            snr = 10 * torch.log10(p_s.clamp(min=1e-20) / p_n)
            centres = torch.tensor([0.5 * (e.snr_range[0] + e.snr_range[1]) for _, e in members], dtype=snr.dtype)
            inside = torch.stack([(snr >= e.snr_range[0]) & (snr <= e.snr_range[1]) for _, e in members], -1)
            dist = torch.abs(snr[:, None] - centres[None]) - 1e6 * inside.to(snr.dtype)  # inside first, then nearest
            return torch.argmin(dist, dim=-1)
        with torch.no_grad():
            win = ref._window(x.device)
            X = torch.stft(x, ref.n_fft, ref.hop_length, window=win, center=True, pad_mode="constant",
                           return_complex=True)
            scores = []
            for expert in module.experts:
                mask = run_expert(expert, f)[0].transpose(1, 2)
                y = torch.istft(X * mask, ref.n_fft, ref.hop_length, window=win, center=True, length=x.shape[-1])
                scores.append(si_sdr(y, s))
            return torch.argmax(torch.stack(scores, -1), dim=-1)

    def _gate_loss(self, module, batch, members):
        ref = members[0][1]
        x, s = batch
        win = ref._window(x.device)
        X = torch.stft(x, ref.n_fft, ref.hop_length, window=win, center=True, pad_mode="constant", return_complex=True)
        f = module.features(torch.abs(X).transpose(1, 2))
        logits = module.gate.segment_logits(f, module._seg(f))  # (batch, n_seg, K)
        labels = self._labels(module, x, s, f, members, ref)
        ce = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                         labels[:, None].expand(-1, logits.shape[1]).reshape(-1), reduction="sum")
        return ce, logits.shape[0] * logits.shape[1]

    def _fingerprint(self, speech, noise, valid, members):
        h = hashlib.sha1()
        params = {k: v for k, v in self.get_params(deep=False).items()
                  if k not in ("experts", "embedding", "verbose", "n_threads")}
        h.update(json.dumps(params, sort_keys=True, default=str).encode())
        for _, est in members:
            for v in est.module_.state_dict().values():
                h.update(np.asarray(v.detach().cpu().numpy().ravel()[:64], dtype=np.float32).tobytes())
        for part in (speech, noise, [p[0] for p in valid]):
            h.update(str(len(part)).encode())
            for y in part:
                h.update(np.float64(y.size).tobytes())
        return h.hexdigest()

    # -- inference --------------------------------------------------------------------------------------------
    def _check_waveform_model(self):
        check_is_fitted(self)
        super()._check_waveform_model()

    def _parts(self, y_model, noise):
        """AudioMixin's hook: the hard path (one specialist per segment) on the torch STFT of the specialists."""
        ref = self._members()[0][1]
        module = self.module_
        module.eval()
        module.seg_frames = self._seg_frames()  # segment_seconds may have been set after fitting
        with torch.no_grad(), _torch_threads(self.n_threads):
            t = torch.from_numpy(np.ascontiguousarray(y_model, dtype=np.float32))[None]
            speech = ref._enhance_batch(module, t)[0][0]
            rest = (t[0] - speech).numpy() if noise else None
            return speech.numpy(), rest

    def choose(self, x, *, sr=None):
        """The specialist chosen for each segment of a waveform (model rate unless ``sr`` is given).

        Returns
        -------
        list of str
            One expert name per segment of ``segment_seconds``.
        """
        from ..audio._io import check_waveform, resample

        self._check_waveform_model()
        ref = self._members()[0][1]
        y = resample(check_waveform(x, name="x"), self.sr if sr is None else int(sr), self.sr)
        with torch.no_grad(), _torch_threads(self.n_threads):
            t = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None]
            X = torch.stft(t, ref.n_fft, ref.hop_length, window=ref._window(t.device), center=True,
                           pad_mode="constant", return_complex=True)
            self.module_.seg_frames = self._seg_frames()
            choice, _ = self.module_.choices(torch.abs(X).transpose(1, 2))
        names = [n for n, _ in self._members()]
        return [names[i] for i in choice[0].tolist()]

    def _active_modules(self):
        """What runs per frame at test time: one specialist (the largest) and the gate (for ``complexity``)."""
        check_is_fitted(self)
        from ._models import _macs_per_frame

        largest = max(self.module_.experts, key=_macs_per_frame)
        return [largest, self.module_.gate]

    # -- persistence ----------------------------------------------------------------------------------------
    def _extra_arrays(self):
        arrays = {}
        if self.partition != "speaker":  # the speaker gate is the embedding's, saved with it
            arrays = {f"gate:{k}": v.detach().cpu().numpy() for k, v in self.module_.gate.state_dict().items()}
        arrays["state:temperature"] = np.array([self.module_.temperature], dtype=np.float64)
        return arrays

    def _load_extra(self, arrays):
        members = self._members()
        for name, est in members:
            if not hasattr(est, "module_"):
                raise ModelFileError(f"expert {name!r} is not fitted")
        if self.n_experts_ != len(members):
            raise ModelFileError(f"n_experts_={self.n_experts_} but {len(members)} experts are stored")
        module = self._build(members)
        if self.partition != "speaker":
            weights = {k[len("gate:"):]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
                       if k.startswith("gate:")}
            for key, value in weights.items():
                if not torch.all(torch.isfinite(value)):
                    raise ModelFileError(f"gate weight {key} holds non-finite values")
            try:
                module.gate.load_state_dict(weights, strict=True)
            except RuntimeError as exc:
                raise ModelFileError(f"the saved gate does not fit the settings: {exc}") from exc
        temp = arrays.get("state:temperature")
        if temp is not None:
            module.temperature = float(np.asarray(temp).ravel()[0])
        module.eval()
        self.module_ = module
        self.history_ = []
