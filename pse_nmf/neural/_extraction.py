"""SpeakerExtractor: personalized enhancement as target speaker extraction (an enrollment-conditioned CompactEnhancer).

The network (:class:`ConditionedMaskNet`) is :class:`~pse_nmf.neural._compact.CompactMaskNet`
with a speaker encoder beside it and two feature-wise affine (FiLM) layers
driven by the encoder's embedding. The estimator (:class:`SpeakerExtractor`)
trains both jointly on three-source mixtures (target, interfering talker,
noise) made on the fly by :class:`ExtractionMixer`.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._persistence import ModelFileError, register_estimator
from ._base import _seed, _torch_threads
from ._compact import CompactMaskNet
from ._engine import DynamicMixer, si_sdr
from ._generalist import CompactEnhancer

__all__ = ["SpeakerExtractor"]

#: training mixtures: share with an interfering talker, its level against the target (dB), and the noise's SNR
#: against the target (dB) with and without a talker (a talker and loud noise together leave little to learn from)
_TALKER_SHARE = 0.75
_SIR_RANGE = (-5.0, 5.0)
_SNR_WITH_TALKER = (0.0, 15.0)
#: validation mixtures (fixed): one talker at 0 dB, noise at 5 dB
_VALID_SIR, _VALID_SNR = 0.0, 5.0
#: speaker augmentation: a voice resampled by up to this many octaves either way (pitch and formants together)
_VOICE_OCTAVES = 0.2


class ConditionedMaskNet(CompactMaskNet):
    r"""CompactMaskNet conditioned on a speaker embedding (SpeakerBeam's adaptation, as FiLM).

    Speaker encoder (on the enrollment's magnitudes): the mask network's
    level-free log band features, a convolution over three frames, PReLU,
    a GRU, attention pooling over the frames
    (:math:`a_t = \mathrm{softmax}_t(w^\top h_t)`, :math:`\bar h = \sum_t a_t h_t`,
    so pauses in the enrollment count little) and a linear layer to a unit
    vector :math:`e` of ``embed_dim``.

    The mask network is CompactMaskNet's with the output :math:`x_t` of its
    convolution and :math:`h_t` of its first GRU modulated feature-wise,
    :math:`x_t \odot (1 + \gamma_1(e)) + \beta_1(e)` and likewise for
    :math:`h_t` (Perez et al.'s FiLM; SpeakerBeam's multiplicative adaptation
    layer is the :math:`\beta = 0` case). The FiLM layers start at zero, so an
    untrained extractor warm-started from a generalist *is* that
    generalist. Per frame it costs the generalist's MACs plus one
    element-wise affine per modulated layer: :math:`\gamma, \beta` are
    computed once per enrollment.
    """

    def __init__(self, n_bins, sr, hop_length, n_linear=64, n_erb=32, conv_channels=64, hidden_size=96,
                 hidden_size2=64, embed_channels=64, embed_dim=64, branch_hidden=0, norm_seconds=3.0):
        super().__init__(n_bins, sr, hop_length, n_linear=n_linear, n_erb=n_erb, conv_channels=conv_channels,
                         hidden_size=hidden_size, hidden_size2=hidden_size2, norm_seconds=norm_seconds)
        self.enc_conv = nn.Conv1d(self.n_bands, embed_channels, kernel_size=3)
        self.enc_act = nn.PReLU(embed_channels)
        self.enc_gru = nn.GRU(embed_channels, embed_channels, batch_first=True)
        self.enc_attn = nn.Linear(embed_channels, 1)
        self.enc_proj = nn.Linear(embed_channels, embed_dim)
        self.film1 = nn.Linear(embed_dim, 2 * conv_channels)
        self.film2 = nn.Linear(embed_dim, 2 * hidden_size)
        zero = [self.film1, self.film2]
        self.branch_hidden = int(branch_hidden)
        if self.branch_hidden:
            self.branch = nn.GRU(hidden_size + embed_dim, self.branch_hidden, batch_first=True)
            self.branch_out = nn.Linear(self.branch_hidden, hidden_size)
            zero.append(self.branch_out)
        for layer in zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # -- the speaker encoder --------------------------------------------------------------------------------------
    def embed(self, mag, weight=None):
        """Unit embeddings (batch, embed_dim) of enrollment magnitudes (batch, n_frames, n_bins).

        ``weight`` (batch, n_frames) of 0/1 marks the real frames of padded
        enrollments; padding gets no attention.
        """
        f = self.features(mag).transpose(1, 2)
        h, _ = self.enc_gru(self.enc_act(self.enc_conv(nn.functional.pad(f, (1, 1)))).transpose(1, 2))
        scores = self.enc_attn(h)[..., 0]
        if weight is not None:
            scores = scores.masked_fill(weight <= 0, float("-inf"))
        a = torch.softmax(scores, dim=1)
        return nn.functional.normalize(self.enc_proj(torch.sum(a[..., None] * h, dim=1)), dim=-1)

    def films(self, emb):
        """The per-channel scales and shifts (each (batch, channels)) of an embedding (batch, embed_dim)."""
        g1, b1 = self.film1(emb).chunk(2, dim=-1)
        g2, b2 = self.film2(emb).chunk(2, dim=-1)
        return 1.0 + g1, b1, 1.0 + g2, b2

    # -- the conditioned mask network -----------------------------------------------------------------------------
    def forward(self, mag, emb):
        """Mask (batch, n_frames, n_bins) of mixture magnitudes, for the speakers of ``emb`` (batch, embed_dim)."""
        s1, b1, s2, b2 = self.films(emb)
        f = self.features(mag).transpose(1, 2)
        x = self.act(self.conv(nn.functional.pad(f, (1, 0)))) * s1[:, :, None] + b1[:, :, None]
        h, _ = self.gru1(x.transpose(1, 2))
        h = h * s2[:, None, :] + b2[:, None, :]
        if self.branch_hidden:
            r, _ = self.branch(torch.cat([h, emb[:, None, :].expand(-1, h.shape[1], -1)], dim=-1))
            h = h + self.branch_out(r)
        h, _ = self.gru2(h)
        return self._head(h)

    def step(self, mag_frame, state, emb):
        """One frame of :meth:`forward` with an explicit state (see CompactMaskNet.step)."""
        s1, b1, s2, b2 = self.films(emb)
        p = torch.matmul(torch.square(mag_frame), self.compress)
        level = self._level(p.mean(dim=1), state["count"], state["level"])
        f = torch.log(p / torch.clamp(level, min=torch.finfo(p.dtype).tiny)[:, None] + self.floor)
        x = self.act(self.conv(torch.stack([state["prev"], f], dim=2)))[:, :, 0] * s1 + b1
        h1, st1 = self.gru1(x[:, None, :], state["h1"])
        h1 = h1 * s2[:, None, :] + b2[:, None, :]
        new = {"count": state["count"] + 1.0, "level": level, "prev": f, "h1": st1}
        if self.branch_hidden:
            hb = state.get("hb")
            if hb is None:
                hb = torch.zeros(1, h1.shape[0], self.branch_hidden, dtype=h1.dtype)
            r, new["hb"] = self.branch(torch.cat([h1, emb[:, None, :]], dim=-1), hb)
            h1 = h1 + self.branch_out(r)
        h2, new["h2"] = self.gru2(h1, state["h2"])
        return self._head(h2)[:, 0], new


class _FixedProducts(nn.Module):
    """A network's fixed products per frame (the band compression and expansion), for ``complexity``."""

    def __init__(self, n):
        super().__init__()
        self.n = int(n)

    def extra_macs_per_frame(self):
        return self.n


class ExtractionMixer(DynamicMixer):
    r"""Target + interfering talker + noise, with an enrollment of the target; made anew every epoch.

    Every example: a segment of a target utterance; an enrollment: a
    segment of ``enroll_segment`` samples of *another* utterance of the same
    speaker (of the same utterance, elsewhere, when the speaker has one);
    with probability ``talker_share`` a segment of another speaker's
    utterance at an SIR uniform in ``sir_range`` against the target (active
    samples), and the noise at an SNR uniform in ``snr_with_talker``,
    otherwise noise alone at an SNR uniform in ``snr_range``; the mixture
    scaled to a random level, as in :class:`DynamicMixer` (whose noise
    excerpts, coloured noise and augmentation it reuses). With probability
    ``speaker_augment`` a speaker's voice is made new for the example: the
    utterance resampled by :math:`2^u`, :math:`u \sim U(-0.2, 0.2)` octaves
    (pitch and formants scaled together, as speed perturbation makes new
    speakers for speaker recognition), the target and its enrollment by the
    same factor, the talker by its own.
    """

    def __init__(self, speakers, noise, segment, enroll_segment, snr_range, seed, talker_share=_TALKER_SHARE,
                 sir_range=_SIR_RANGE, snr_with_talker=_SNR_WITH_TALKER, augment=0.0, speaker_augment=0.0):
        names = sorted(speakers)
        speech, owner = [], []
        for k, g in enumerate(names):
            for y in speakers[g]:
                if np.any(y):
                    speech.append(np.asarray(y, dtype=np.float32))
                    owner.append(k)
        super().__init__(speech, noise, segment, snr_range, seed, augment=augment)
        if len(set(owner)) < 2:
            raise ValueError("SpeakerExtractor.fit needs speech of at least 2 speakers (an interfering talker is "
                             "another speaker): give a folder of speaker folders or a mapping speaker -> recordings")
        self.owner = np.asarray(owner)
        self.by_speaker = [np.flatnonzero(self.owner == k) for k in range(len(names))]
        self.enroll_segment = int(enroll_segment)
        self.talker_share = float(talker_share)
        self.sir_range, self.snr_with_talker = tuple(sir_range), tuple(snr_with_talker)
        self.speaker_augment = float(speaker_augment)

    def _voice(self, rng):
        """A resampling factor that makes a new voice (1: the speaker as recorded), drawn per speaker and example."""
        if self.speaker_augment > 0 and rng.uniform() < self.speaker_augment:
            return 2.0 ** rng.uniform(-_VOICE_OCTAVES, _VOICE_OCTAVES)
        return 1.0

    @staticmethod
    def _resampled(y, rate):
        """``y`` played ``rate`` times faster (pitch and formants scaled by ``rate``; linear interpolation)."""
        if rate == 1.0:
            return y
        return np.interp(np.arange(0.0, y.size - 1, rate), np.arange(y.size), y).astype(np.float32)

    @staticmethod
    def _power(y):
        active = y[y != 0]
        return float(np.mean(np.square(active, dtype=np.float64))) if active.size else 0.0

    def _scaled(self, y, reference_power, db):
        p = self._power(y)
        return y * np.float32(math.sqrt(reference_power / (p * 10.0 ** (db / 10.0)))) if p > 0 else y

    def extraction_example(self, j, rng):
        """(mixture, target, enrollment) float32 arrays for utterance ``j`` as the target."""
        voice = self._voice(rng)  # the target and its enrollment: the same (maybe new) voice
        target = self._resampled(self.speech[j], voice)
        s = self._crop(target, self.segment, rng)
        if not np.any(s):
            s = self._crop(target, self.segment, rng)
        own = self.by_speaker[self.owner[j]]
        others = own[own != j]
        e = self._crop(self._resampled(self.speech[others[rng.randint(others.size)]], voice) if others.size
                       else target, self.enroll_segment, rng)
        p_s = self._power(s)
        x = s.copy()
        if rng.uniform() < self.talker_share:
            k = rng.randint(len(self.speech) - own.size)  # an utterance of any other speaker, uniformly
            k = np.flatnonzero(self.owner != self.owner[j])[k]
            talker = self._resampled(self.speech[k], self._voice(rng))
            x += self._scaled(self._crop(talker, self.segment, rng), p_s, rng.uniform(*self.sir_range))
            snr = rng.uniform(*self.snr_with_talker)
        else:
            snr = rng.uniform(*self.snr_range)
        x += self._scaled(self._noise(self.segment, rng), p_s, snr)
        rms = math.sqrt(float(np.mean(np.square(x, dtype=np.float64))))
        gain = 10.0 ** (rng.uniform(*self.level_range_db) / 20.0) / max(rms, 1e-12)
        e_rms = math.sqrt(max(self._power(e), 1e-24))
        e_gain = 10.0 ** (rng.uniform(*self.level_range_db) / 20.0) / e_rms
        return (x * gain).astype(np.float32), (s * gain).astype(np.float32), (e * e_gain).astype(np.float32)

    def batches(self, epoch, batch_size):
        """The epoch's batches: float32 tensors (mixture, target, enrollment), (batch, samples) each."""
        rng = np.random.RandomState([self.seed, int(epoch)])
        order = rng.permutation(len(self.speech))
        for i in range(0, len(order), batch_size):
            ex = [self.extraction_example(j, rng) for j in order[i : i + batch_size]]
            yield tuple(torch.from_numpy(np.stack([e[k] for e in ex])) for k in range(3))


@register_estimator
class SpeakerExtractor(CompactEnhancer):
    r"""Personalized speech enhancement as target speaker extraction: keep the enrolled voice, remove the rest.

    A generalist keeps every voice; a user on a call next to a talking
    colleague wants only their own. :class:`SpeakerExtractor` is a
    :class:`~pse_nmf.neural.CompactEnhancer` conditioned on an embedding of
    a few seconds of the user's clean speech (the *enrollment*), in the
    manner of VoiceFilter [1]_ and SpeakerBeam [2]_: a speaker encoder turns
    the enrollment into a unit vector, which scales and shifts the features
    of the mask network feature-wise (FiLM [3]_; see
    :class:`~pse_nmf.neural._extraction.ConditionedMaskNet`). Encoder and
    mask network are trained jointly on the extraction loss, as SpeakerBeam
    trains its auxiliary network (our choice over VoiceFilter's separately
    trained d-vector: no speaker-verification corpus is needed). The mask
    is causal, streamable and costs the generalist's MACs per frame; the
    encoder runs once per enrollment.

    Training (``fit``): speech grouped by speaker, mixed on the fly
    (:class:`~pse_nmf.neural._extraction.ExtractionMixer`): each example a
    target segment, an enrollment from another utterance of the same
    speaker, in 75 % of the examples an interfering talker (another speaker)
    at an SIR uniform in [-5, 5] dB with noise at 0 to 15 dB SNR, otherwise
    noise alone at ``snr_range``. The loss is the generalist's
    (``loss``, default SI-SDR plus a differentiable eSTOI) on the target.
    ``fit(..., init=generalist)`` starts the mask network from a fitted
    :class:`~pse_nmf.neural.CompactEnhancer` of the same layout (the
    shipped extractor starts from ``pretrained("generalist")``); the FiLM
    layers start at zero, so training starts from the generalist's output.

    Use: :meth:`enroll` with the user's clean speech (3 s or more; the
    embedding is stored in ``enrollment_`` and saved with the model), then
    ``denoise`` / ``separate`` / ``transform`` as for any enhancer.

    Parameters
    ----------
    embed_dim : int, default=64
        Size of the speaker embedding.
    enroll_seconds : float, default=3.0
        Length of the training enrollments.
    branch_hidden : int, default=0
        Units of an extra GRU beside the first one (0: none), fed with its
        modulated output and the embedding, whose output (through a linear
        layer that starts at zero) is added to it: capacity for the
        extraction on top of a warm-started generalist.
    speaker_augment : float, default=0.0
        Share of the training voices made new by resampling (pitch and
        formants up to 0.2 octave either way; see
        :class:`~pse_nmf.neural._extraction.ExtractionMixer`): more voices
        than the training speakers, for an encoder that generalises to
        unseen ones.
    n_linear, n_erb, conv_channels, hidden_size, hidden_size2, loss, snr_range, noise_augment, segment_seconds, \
max_epochs, batch_size, learning_rate, validation_fraction, patience, warm_start, sr, n_fft, hop_length, device, \
n_threads, random_state, verbose : as CompactEnhancer's
        As :class:`~pse_nmf.neural.CompactEnhancer`'s (``warm_start``:
        ``fit`` continues from the current weights, encoder included).

    Attributes
    ----------
    module_ : ConditionedMaskNet
    enrollment_ : ndarray of shape (embed_dim,) or None
        The enrolled speaker's embedding (None before :meth:`enroll`).
    enrollment_seconds_ : float
        Seconds of speech the enrollment was made from.
    history_, n_epochs_, best_epoch_, best_loss_, n_features_in_, optimizer_
        As :class:`~pse_nmf.neural.CompactEnhancer`'s; ``best_loss_`` is the
        best validation SI-SDR (dB) of the fixed extraction mixtures.

    References
    ----------
    .. [1] Q. Wang, H. Muckenhirn, K. Wilson, P. Sridhar, Z. Wu, J. Hershey,
       R. A. Saurous, R. J. Weiss, Y. Jia and I. L. Moreno, "VoiceFilter:
       targeted voice separation by speaker-conditioned spectrogram
       masking", Interspeech 2019.
    .. [2] K. Žmolíková, M. Delcroix, K. Kinoshita, T. Ochiai, T. Nakatani,
       L. Burget and J. Černocký, "SpeakerBeam: speaker aware neural network
       for target speaker extraction in speech mixtures", IEEE JSTSP 13(4),
       2019.
    .. [3] E. Perez, F. Strub, H. de Vries, V. Dumoulin and A. Courville,
       "FiLM: visual reasoning with a general conditioning layer", AAAI 2018.

    Examples
    --------
    >>> import warnings
    >>> from pse_nmf.datasets import load_example
    >>> from pse_nmf.neural import SpeakerExtractor
    >>> data = load_example()
    >>> model = SpeakerExtractor(hidden_size=16, hidden_size2=8, conv_channels=8, embed_dim=8, max_epochs=1,
    ...                          batch_size=4, random_state=0)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # 1 epoch: a ConvergenceWarning
    ...     model = model.fit(data.speech, data.noise)
    >>> me = data.speech[sorted(data.speech)[0]]
    >>> model = model.enroll(me[1:])
    >>> model.denoise(me[0]).shape == me[0].shape
    True
    """

    _parameter_constraints = {
        **CompactEnhancer._parameter_constraints,
        "embed_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "enroll_seconds": [Interval(numbers.Real, 0, None, closed="neither")],
        "branch_hidden": [Interval(numbers.Integral, 0, None, closed="left")],
        "speaker_augment": [Interval(numbers.Real, 0, 1, closed="both")],
    }
    _fitted_scalars = (*CompactEnhancer._fitted_scalars, "enrollment_seconds_")

    def __init__(self, embed_dim=64, enroll_seconds=3.0, branch_hidden=0, speaker_augment=0.0, n_linear=64,
                 n_erb=32, conv_channels=64, hidden_size=96, hidden_size2=64, loss="si_sdr_estoi",
                 snr_range=(-5.0, 15.0), noise_augment=0.5, segment_seconds=3.0, max_epochs=60, batch_size=32,
                 learning_rate=3e-3, validation_fraction=0.1, patience=10, warm_start=False, sr=16000, n_fft=512,
                 hop_length=128, device="cpu", n_threads=1, random_state=None, verbose=0):
        self.embed_dim = embed_dim
        self.enroll_seconds = enroll_seconds
        self.branch_hidden = branch_hidden
        self.speaker_augment = speaker_augment
        super().__init__(n_linear=n_linear, n_erb=n_erb, conv_channels=conv_channels, hidden_size=hidden_size,
                         hidden_size2=hidden_size2, loss=loss, snr_range=snr_range, noise_augment=noise_augment,
                         segment_seconds=segment_seconds, max_epochs=max_epochs, batch_size=batch_size,
                         learning_rate=learning_rate, validation_fraction=validation_fraction, patience=patience,
                         warm_start=warm_start, sr=sr, n_fft=n_fft, hop_length=hop_length, device=device,
                         n_threads=n_threads, random_state=random_state, verbose=verbose)

    def _build_module(self, n_bins):
        super()._build_module(n_bins)  # the layout checks
        return ConditionedMaskNet(n_bins, self.sr, self.hop_length, n_linear=self.n_linear, n_erb=self.n_erb,
                                  conv_channels=self.conv_channels, hidden_size=self.hidden_size,
                                  hidden_size2=self.hidden_size2, embed_channels=64, embed_dim=self.embed_dim,
                                  branch_hidden=self.branch_hidden)

    # -- graph helpers -----------------------------------------------------------------------------------------
    def _stft_mag(self, x):
        X = torch.stft(x, self.n_fft, self.hop_length, window=self._window(x.device), center=True,
                       pad_mode="constant", return_complex=True)
        return X, torch.abs(X).transpose(1, 2)

    def _embed_batch(self, module, e):
        return module.embed(self._stft_mag(e)[1])

    def _enhance_batch(self, module, x, emb=None):
        """Waveforms (batch, n_samples) -> target estimates and their STFTs, for embeddings ``emb``."""
        if emb is None:
            emb = self._enrollment_tensor(x.shape[0], x.device)
        X, mag = self._stft_mag(x)
        E = X * module(mag, emb).transpose(1, 2)
        y = torch.istft(E, self.n_fft, self.hop_length, window=self._window(x.device), center=True,
                        length=x.shape[-1])
        return y, E

    def _batch_loss(self, module, batch):
        x, s, e = (t.to(self._device()) for t in batch)
        y, E = self._enhance_batch(module, x, self._embed_batch(module, e))
        return self._waveform_loss(y, E, s) * x.shape[0], x.shape[0]

    def _validation_score(self, module, triples):
        """Mean SI-SDR (dB) of the fixed extraction mixtures, each whole."""
        scores = []
        with torch.no_grad():
            for mix, clean, enroll in triples:
                emb = self._embed_batch(module, torch.from_numpy(enroll)[None].to(self._device()))
                y, _ = self._enhance_batch(module, torch.from_numpy(mix)[None].to(self._device()), emb)
                scores.append(float(si_sdr(y.cpu(), torch.from_numpy(clean)[None])[0]))
        return float(np.mean(scores))

    def _validation_set(self, speakers, noise, seed):
        """Fixed validation mixtures: each utterance + the next speaker's first utterance at 0 dB + noise at 5 dB.

        The enrollment is another utterance of its speaker (its own when the speaker has one).
        """
        names = sorted(speakers)
        if len(names) < 2:
            return []
        mixer = DynamicMixer([y for g in names for y in speakers[g]], noise, 1, (0.0, 0.0), seed, colored_noise=0.0)
        rng = np.random.RandomState([int(seed), 2**31 - 3])
        out = []
        for k, g in enumerate(names):
            other = speakers[names[(k + 1) % len(names)]][0]
            for i, s in enumerate(speakers[g]):
                s = np.asarray(s, dtype=np.float32)
                enroll = speakers[g][(i + 1) % len(speakers[g])]
                t = mixer._crop(np.asarray(other, dtype=np.float32), s.size, rng)
                p_s = ExtractionMixer._power(s)
                pt = ExtractionMixer._power(t)
                x = s + (t * np.float32(math.sqrt(p_s / (pt * 10 ** (_VALID_SIR / 10)))) if pt > 0 else 0)
                n = mixer._excerpt(s.size, rng)
                x = x + n * np.float32(math.sqrt(p_s / (ExtractionMixer._power(n) * 10 ** (_VALID_SNR / 10))))
                gain = 0.05 / max(math.sqrt(float(np.mean(np.square(x, dtype=np.float64)))), 1e-12)
                out.append(((x * gain).astype(np.float32), (s * gain).astype(np.float32),
                            np.asarray(enroll, dtype=np.float32)))
        return out

    def _fingerprint_extraction(self, speakers, noise, valid):
        h = hashlib.sha1()
        params = {k: v for k, v in self.get_params().items() if k not in ("verbose", "device", "n_threads")}
        h.update(json.dumps(params, sort_keys=True, default=str).encode())
        for g in sorted(speakers):
            h.update(g.encode())
            for y in speakers[g]:
                h.update(np.float64(y.size).tobytes())
                h.update(np.asarray(y[:4096], dtype=np.float32).tobytes())
        h.update(str([n.size for n in noise]).encode())
        h.update(str([t[0].size for t in valid]).encode())
        return h.hexdigest()

    # -- fitting ---------------------------------------------------------------------------------------------
    def fit(self, speech, noise, *, init=None, validation=None, sr=None, downmix=False, checkpoint=None,
            resume=False):
        """Train the extractor on target + talker + noise mixtures made on the fly.

        Parameters
        ----------
        speech : folder of speaker folders, or mapping speaker -> recordings
            At least 2 speakers (the interfering talkers are other speakers).
        noise : folder, list of waveforms or paths, or mapping
        init : CompactEnhancer or None
            A fitted generalist of the same layout whose weights start the
            mask network (the encoder and the zero FiLM layers start anew).
            Ignored with ``warm_start`` and a fitted model.
        validation : (speech, noise) or None
            Held-out speakers (grouped like ``speech``) and noise for the
            fixed validation mixtures; None holds out
            ``validation_fraction`` of the speakers of ``speech``.
        sr : int or None
        downmix : bool, default=False
        checkpoint : path or None
        resume : bool, default=False

        Returns
        -------
        self
        """
        self._validate_params()
        snr_range = self._check_snr_range()
        if resume and checkpoint is None:
            raise ValueError("resume=True needs checkpoint=<path>")
        rng = check_random_state(self.random_state)
        speakers = {g: [y for y in ys if np.any(y)] for g, ys in self._grouped(speech, sr, downmix, "speech").items()}
        speakers = {g: ys for g, ys in speakers.items() if ys}
        noise_recs = [y for ys in self._grouped(noise, sr, downmix, "noise").values() for y in ys if np.any(y)]
        if not noise_recs:
            raise ValueError("the noise recordings are all silent (zeros): nothing to mix")
        init_seed, data_seed = _seed(rng), _seed(rng)
        names = sorted(speakers)
        if validation is None:
            n_valid = 0
            if self.validation_fraction > 0 and len(names) >= 4:
                n_valid = max(2, int(round(self.validation_fraction * len(names))))
            held = set(rng.permutation(names)[:n_valid].tolist())
            train = {g: speakers[g] for g in names if g not in held}
            valid_speakers, valid_noise = {g: speakers[g] for g in names if g in held}, noise_recs
        else:
            if not (isinstance(validation, tuple) and len(validation) == 2):
                raise TypeError("validation must be a (speech, noise) pair")
            train = speakers
            valid_speakers = self._grouped(validation[0], sr, downmix, "validation speech")
            valid_noise = [y for ys in self._grouped(validation[1], sr, downmix, "validation noise").values()
                           for y in ys if np.any(y)]
        segment = max(int(round(self.segment_seconds * self.sr)), self.n_fft)
        enroll_segment = max(int(round(self.enroll_seconds * self.sr)), self.n_fft)
        mixer = ExtractionMixer(train, noise_recs, segment, enroll_segment, snr_range, data_seed,
                                augment=self.noise_augment, speaker_augment=self.speaker_augment)
        valid = self._validation_set(valid_speakers, valid_noise, data_seed)

        n_bins = self._n_bins()
        if not (self.warm_start and hasattr(self, "module_")):
            self.module_ = self._new_module(n_bins, init_seed)
            if init is not None:
                self._init_from(init)
        elif self.n_features_in_ != n_bins:
            raise ValueError(f"warm_start: the fitted network has {self.n_features_in_} bins, n_fft={self.n_fft} "
                             f"needs {n_bins}")
        self.n_features_in_ = n_bins
        self.enrollment_, self.enrollment_seconds_ = None, 0.0
        self._fit_mixer(mixer, valid, self._fingerprint_extraction(train, noise_recs, valid), checkpoint, resume)
        return self

    def _init_from(self, base):
        if not isinstance(base, CompactEnhancer) or isinstance(base, SpeakerExtractor):
            raise TypeError(f"init must be a fitted CompactEnhancer (a generalist), got {type(base).__name__}")
        check_is_fitted(base, "module_")
        layout = ("n_linear", "n_erb", "conv_channels", "hidden_size", "hidden_size2", "sr", "n_fft", "hop_length")
        diff = [k for k in layout if getattr(base, k) != getattr(self, k)]
        if diff:
            raise ValueError("init has another layout than this extractor: "
                             + ", ".join(f"{k}={getattr(base, k)} here {getattr(self, k)}" for k in diff))
        missing, unexpected = self.module_.load_state_dict(base.module_.state_dict(), strict=False)
        assert not unexpected and all(k.startswith(("enc_", "film", "branch")) for k in missing)

    # -- enrollment -----------------------------------------------------------------------------------------
    def enroll(self, speech, *, sr=None, downmix=False):
        """Embed the user's clean speech; ``denoise`` then keeps that voice.

        Parameters
        ----------
        speech : waveform, path, folder or list of them
            Clean speech of the target speaker (3 s or more recommended;
            the embedding of several recordings is their attention pooling
            taken together: each recording's embedding weighted by its
            length, then renormalised).
        sr : int or None
            Rate of waveforms given as arrays; None means ``self.sr``.
        downmix : bool, default=False

        Returns
        -------
        self
        """
        check_is_fitted(self, "module_")
        recs = [y for ys in self._grouped(speech, sr, downmix, "enrollment speech").values() for y in ys
                if np.any(y)]
        if not recs:
            raise ValueError("the enrollment speech is empty or silent: give a few seconds of the user's clean speech")
        module = self.module_
        module.eval()
        with torch.no_grad(), _torch_threads(self.n_threads):
            embs = [self._embed_batch(module, torch.from_numpy(np.ascontiguousarray(y, np.float32))[None])[0]
                    for y in recs]
        w = np.array([y.size for y in recs], dtype=np.float64)
        e = np.sum([wi * emb.numpy().astype(np.float64) for wi, emb in zip(w, embs)], axis=0)
        self.enrollment_ = (e / max(np.linalg.norm(e), 1e-12)).astype(np.float32)
        self.enrollment_seconds_ = float(w.sum() / self.sr)
        return self

    def _enrollment_tensor(self, batch, device):
        if getattr(self, "enrollment_", None) is None:
            raise ValueError("SpeakerExtractor has no enrolled speaker: call enroll(clean_speech) first")
        return torch.from_numpy(self.enrollment_).to(device)[None].expand(batch, -1)

    # -- inference --------------------------------------------------------------------------------------------
    def _predict_mask(self, V):
        module = self.module_
        module.eval()
        with torch.no_grad(), _torch_threads(self.n_threads):
            x = torch.as_tensor(np.asarray(V, dtype=np.float32), device=self._device())[None]
            return module(x, self._enrollment_tensor(1, x.device))[0].cpu().numpy()

    def stream_masks(self, frames):
        """Masks of magnitude frames computed one frame at a time, for the enrolled speaker.

        Yields
        ------
        ndarray of shape (n_bins,)
            What :meth:`predict_mask` gives that frame of the whole sequence.
        """
        check_is_fitted(self)
        module = self.module_
        module.eval()
        with torch.no_grad(), _torch_threads(self.n_threads):
            emb = self._enrollment_tensor(1, self._device())
            state = module.initial_state(1)
            for frame in frames:
                v = torch.as_tensor(np.asarray(frame, dtype=np.float32), device=self._device())[None]
                mask, state = module.step(v, state, emb)
                yield mask[0].cpu().numpy()

    def _active_modules(self):
        """What runs per frame (for ``complexity``): the mask network; the encoder runs once per enrollment."""
        check_is_fitted(self, "module_")
        m = self.module_
        branch = [m.branch, m.branch_out] if m.branch_hidden else []
        return [m.conv, m.gru1, *branch, m.gru2, m.out, _FixedProducts(m.extra_macs_per_frame())]

    # -- persistence --------------------------------------------------------------------------------------------
    def _extra_arrays(self):
        arrays = super()._extra_arrays()
        if getattr(self, "enrollment_", None) is not None:
            arrays["enrollment:embedding"] = np.asarray(self.enrollment_, dtype=np.float32)
        return arrays

    def _load_extra(self, arrays):
        super()._load_extra(arrays)
        e = arrays.get("enrollment:embedding")
        if e is not None:
            if e.shape != (self.embed_dim,) or e.dtype.kind != "f" or not np.all(np.isfinite(e)):
                raise ModelFileError(f"the saved enrollment has shape {e.shape} and dtype {e.dtype}, expected "
                                     f"({self.embed_dim},) finite floats")
            if not 0.5 < float(np.linalg.norm(e)) < 2.0:
                raise ModelFileError("the saved enrollment is not a unit embedding: the file is damaged")
        self.enrollment_ = None if e is None else np.array(e, dtype=np.float32)
        if e is None:
            self.enrollment_seconds_ = 0.0
