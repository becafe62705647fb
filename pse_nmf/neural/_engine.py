"""The training engine of the neural estimators: dynamic mixing, losses, schedule, checkpoints, the loop.

One loop (:func:`fit_loop`) trains every network of ``pse_nmf.neural``, as
``pse_nmf.decomposition._nmf._solve`` is the one update loop of the NMF estimators. It
knows nothing of audio: a callable gives each epoch's batches, another the
loss of a batch, a third the validation score. :class:`DynamicMixer` makes
the waveform batches of the generalists on the fly (a new random segment,
noise excerpt, SNR and gain for every example of every epoch), with an RNG
derived from ``(seed, epoch)`` so that an epoch's data do not depend on
whether training was resumed before it.

Checkpoints are npz archives (arrays plus one JSON string, no pickle), so a
checkpoint loads without executing code, like the model files.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DynamicMixer", "fit_loop", "si_sdr_loss", "compressed_spectral_loss", "si_sdr_estoi_loss", "cosine_schedule",
    "CheckpointError", "FitResult",
]

_CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A training checkpoint that is damaged or belongs to another training."""


# -- dynamic mixing -----------------------------------------------------------------------------------
class DynamicMixer:
    r"""Speech + noise training batches made anew every epoch.

    Every example of an epoch: one speech recording (each recording once per
    epoch, in a random order), a random segment of ``segment`` samples of it
    (zero-padded at a random offset when the recording is shorter), a random
    excerpt of a random noise recording (tiled when shorter), mixed at an SNR
    drawn uniformly from ``snr_range`` (measured over the segment's speech
    samples), and the pair scaled by a random gain so that the mixture's RMS
    is uniform in ``level_range_db`` dBFS. With probability
    ``colored_noise`` the noise is instead Gaussian noise with a random
    spectral slope (:math:`f^{-\gamma}`, :math:`\gamma \sim U(0, 2)`: white to
    brown), which widens the set of stationary noises beyond the recordings.
    With probability ``augment`` a recorded excerpt is made new (a few
    clips of a noise type are otherwise learned by heart, and a new clip of
    the same type is then as unseen as a new type): its speed and pitch
    changed by a factor :math:`2^{u}`, :math:`u \sim U(-0.4, 0.4)` (linear
    interpolation), reversed in time half of the time, its spectrum tilted
    by up to 3 dB per octave and reshaped by three broad random bumps or
    dips of up to 9 dB, and with probability 0.3 summed with a second
    excerpt 0 to 10 dB below it.

    Parameters
    ----------
    speech : list of ndarray
        Clean speech waveforms (float32).
    noise : list of ndarray
        Noise waveforms, not all silent.
    segment : int
        Samples per example.
    snr_range : (float, float)
    seed : int
    level_range_db : (float, float), default=(-40.0, -15.0)
    colored_noise : float, default=0.1
    augment : float, default=0.0
    """

    def __init__(self, speech, noise, segment, snr_range, seed, level_range_db=(-40.0, -15.0), colored_noise=0.1,
                 augment=0.0):
        self.speech = [np.asarray(s, dtype=np.float32) for s in speech if np.any(s)]
        self.noise = [np.asarray(n, dtype=np.float32) for n in noise if np.any(n)]
        if not self.speech:
            raise ValueError("no speech to train on: the speech recordings are empty or silent")
        if not self.noise:
            raise ValueError("no noise to train on: the noise recordings are empty or silent")
        self.segment = int(segment)
        self.snr_range = (float(snr_range[0]), float(snr_range[1]))
        self.seed = int(seed)
        self.level_range_db = tuple(float(v) for v in level_range_db)
        self.colored_noise = float(colored_noise)
        self.augment = float(augment)

    def __len__(self):
        return len(self.speech)

    def n_batches(self, batch_size):
        return math.ceil(len(self.speech) / batch_size)

    def _crop(self, y, n, rng):
        if y.size >= n:
            start = rng.randint(y.size - n + 1)
            return y[start : start + n]
        out = np.zeros(n, np.float32)
        start = rng.randint(n - y.size + 1)
        out[start : start + y.size] = y
        return out

    def _excerpt(self, n, rng):
        """A non-silent random excerpt of ``n`` samples of a random noise recording (tiled when shorter)."""
        for _ in range(20):
            y = self.noise[rng.randint(len(self.noise))]
            if y.size < n:
                y = np.tile(y, math.ceil(n / y.size) + 1)
            piece = self._crop(y, n, rng)
            if np.any(piece):
                return piece
        raise ValueError("the noise recordings gave silent excerpts 20 times in a row: too much digital silence")

    def _augmented(self, n, rng):
        """An excerpt made new (see the class docstring).

        Its speed (and pitch) changed, its spectrum tilted and reshaped, maybe reversed, maybe summed with a
        second excerpt.
        """
        rate = 2.0 ** rng.uniform(-0.4, 0.4)  # speed and pitch by up to 0.4 octave either way
        m = int(math.ceil(n * rate)) + 1
        piece = self._excerpt(m, rng).astype(np.float64)
        piece = np.interp(np.arange(n) * rate, np.arange(m), piece)
        if rng.uniform() < 0.5:
            piece = piece[::-1]
        spec = np.fft.rfft(piece)
        octaves = np.log2(np.maximum(np.arange(spec.size), 1.0) / spec.size * 64)  # -6 (near DC) .. 6
        gain_db = rng.uniform(-3.0, 3.0) * octaves  # a tilt of up to 3 dB per octave
        for _ in range(3):  # and three broad bumps or dips of up to 9 dB
            amp = rng.uniform(-9.0, 9.0)  # drawn first, as before (the augmentation's random stream is unchanged)
            bump = (octaves - rng.uniform(-4, 6)) / rng.uniform(0.3, 1.5)
            gain_db += amp * np.exp(-0.5 * bump**2)
        piece = np.fft.irfft(spec * 10.0 ** (gain_db / 20.0), n)
        if rng.uniform() < 0.3:
            other = self._excerpt(n, rng).astype(np.float64)
            ratio = math.sqrt(np.mean(piece ** 2) / max(np.mean(other ** 2), 1e-20))
            piece = piece + other * ratio * 10.0 ** (rng.uniform(-10.0, 0.0) / 20.0)
        return piece.astype(np.float32) if np.any(piece) else self._excerpt(n, rng)

    def _noise(self, n, rng):
        if rng.uniform() < self.colored_noise:
            gamma = rng.uniform(0.0, 2.0)
            spec = np.fft.rfft(rng.standard_normal(n))
            f = np.arange(spec.size, dtype=np.float64)
            f[0] = 1.0
            return np.fft.irfft(spec * f ** (-gamma / 2.0), n).astype(np.float32)
        if self.augment > 0 and rng.uniform() < self.augment:  # no draw without: the same data as before
            return self._augmented(n, rng)
        return self._excerpt(n, rng)

    def example(self, speech, rng):
        """One (mixture, clean) pair of ``segment`` samples from a speech waveform."""
        s = self._crop(speech, self.segment, rng)
        active = s[s != 0]
        if active.size == 0:  # a silent stretch of speech: draw another segment
            s = self._crop(speech, self.segment, rng)
            active = s[s != 0] if np.any(s) else speech[speech != 0]
        n = self._noise(self.segment, rng)
        snr = rng.uniform(*self.snr_range)
        p_s = float(np.mean(np.square(active, dtype=np.float64)))
        p_n = float(np.mean(np.square(n, dtype=np.float64)))
        n = n * np.float32(math.sqrt(p_s / (p_n * 10.0 ** (snr / 10.0))))
        x = s + n
        rms = math.sqrt(float(np.mean(np.square(x, dtype=np.float64))))
        gain = 10.0 ** (rng.uniform(*self.level_range_db) / 20.0) / max(rms, 1e-12)
        return (x * gain).astype(np.float32), (s * gain).astype(np.float32)

    def batches(self, epoch, batch_size):
        """The epoch's batches: tuples of float32 tensors (mixture, clean), each (batch, segment)."""
        rng = np.random.RandomState([self.seed, int(epoch)])
        order = rng.permutation(len(self.speech))
        for i in range(0, len(order), batch_size):
            pairs = [self.example(self.speech[j], rng) for j in order[i : i + batch_size]]
            yield (torch.from_numpy(np.stack([p[0] for p in pairs])),
                   torch.from_numpy(np.stack([p[1] for p in pairs])))


def fixed_mixtures(speech, noise, snrs, seed):
    """Validation mixtures drawn once: each speech waveform whole, with a seeded noise excerpt and SNR.

    SNRs cycle through ``snrs`` over the recordings. Returns a list of
    (mixture, clean) float32 arrays.
    """
    mixer = DynamicMixer(speech, noise, 1, (0.0, 0.0), seed, colored_noise=0.0)
    rng = np.random.RandomState([int(seed), 2**31 - 1])
    out = []
    for i, s in enumerate(mixer.speech):
        mixer.segment = s.size
        mixer.snr_range = (float(snrs[i % len(snrs)]),) * 2
        out.append(mixer.example(s, rng))
    return out


# -- losses ---------------------------------------------------------------------------------------------
def si_sdr(estimate, reference, eps=1e-8):
    r"""Scale-invariant SDR in dB of each row of (batch, n_samples) tensors (Le Roux et al. 2019).

    Unlike :func:`pse_nmf.metrics.si_sdr`, the means are not removed first: audio
    has (nearly) zero mean, and the loss is cheaper without it.

    .. math:: \text{SI-SDR} = 10 \log_{10} \frac{\|\alpha s\|^2}{\|\alpha s - \hat s\|^2},
              \qquad \alpha = \frac{\langle \hat s, s\rangle}{\|s\|^2}
    """
    ref_energy = torch.sum(reference * reference, dim=-1, keepdim=True) + eps
    alpha = torch.sum(estimate * reference, dim=-1, keepdim=True) / ref_energy
    target = alpha * reference
    residual = estimate - target
    return 10 * torch.log10((torch.sum(target * target, dim=-1) + eps) / (torch.sum(residual * residual, dim=-1) + eps))


def si_sdr_loss(estimate, reference, spec_estimate=None, spec_reference=None):
    """Negative mean SI-SDR (dB) of a batch of waveforms."""
    return -si_sdr(estimate, reference).mean()


def compressed_spectral_loss(estimate, reference, spec_estimate, spec_reference, power=0.3, complex_weight=0.3):
    r"""Power-law compressed spectral loss of Braun et al. (ICASSP 2021).

    .. math::

        \mathcal{L} = \alpha \, \overline{\left| |S|^c e^{j\phi_S} - |\hat S|^c e^{j\phi_{\hat S}} \right|^2}
        + (1 - \alpha) \, \overline{\left( |S|^c - |\hat S|^c \right)^2}

    with :math:`c` = ``power`` = 0.3 and :math:`\alpha` = ``complex_weight``
    = 0.3, on STFTs (batch, n_bins, n_frames) of the signals divided by the
    clean signal's RMS (so the loss does not depend on the level).
    """
    scale = torch.sqrt(torch.mean(reference * reference, dim=-1) + 1e-12)[:, None, None]
    S, E = spec_reference / scale, spec_estimate / scale
    mag_s, mag_e = torch.abs(S) + 1e-12, torch.abs(E) + 1e-12
    cs, ce = mag_s ** power, mag_e ** power
    complex_term = torch.abs(cs * (S / mag_s) - ce * (E / mag_e)) ** 2
    return complex_weight * complex_term.mean() + (1 - complex_weight) * torch.square(cs - ce).mean()


def third_octave_matrix(sr, n_fft, n_bands=15, min_freq=150.0):
    """STOI's 1/3-octave band matrix (Taal et al. 2011): (n_bands, n_fft // 2 + 1) of 0/1, pystoi's edges."""
    f = np.linspace(0, sr, n_fft + 1)[: n_fft // 2 + 1]
    k = np.arange(n_bands, dtype=float)
    low = min_freq * 2.0 ** ((2 * k - 1) / 6)
    high = min_freq * 2.0 ** ((2 * k + 1) / 6)
    M = np.zeros((n_bands, f.size))
    for i in range(n_bands):
        M[i, int(np.argmin((f - low[i]) ** 2)) : int(np.argmin((f - high[i]) ** 2))] = 1.0
    return M


def estoi_like(spec_estimate, spec_reference, bands, n_frames, step):
    r"""A differentiable eSTOI (Jensen & Taal 2016) on STFTs (batch, n_bins, n_frames), higher is better.

    The 1/3-octave envelopes :math:`\sqrt{M |S|^2}` of both signals are cut
    into segments of ``n_frames`` frames (every ``step`` frames); each
    segment's envelopes are normalised to zero mean and unit norm along time
    in each band, then along the bands in each frame, and the score is the
    mean over segments of :math:`\frac{1}{N}\sum \hat{x} \hat{y}`, as in
    eSTOI, without its removal of silent frames. Every band counts the same,
    however weak, which is what a loss on the waveform (SI-SDR) misses.
    """
    x = torch.sqrt(torch.matmul(bands, torch.abs(spec_reference) ** 2) + 1e-12)
    y = torch.sqrt(torch.matmul(bands, torch.abs(spec_estimate) ** 2) + 1e-12)
    if x.shape[-1] < n_frames:
        n_frames = x.shape[-1]
    x = x.unfold(-1, n_frames, step)  # (batch, bands, segments, n_frames)
    y = y.unfold(-1, n_frames, step)

    def normalise(z, dim):
        z = z - z.mean(dim=dim, keepdim=True)
        return z / (torch.linalg.vector_norm(z, dim=dim, keepdim=True) + 1e-8)

    x, y = normalise(normalise(x, -1), 1), normalise(normalise(y, -1), 1)
    return (x * y).sum(dim=1).mean(dim=-1).mean()


def si_sdr_estoi_loss(estimate, reference, spec_estimate, spec_reference, bands, n_frames, step):
    """``-(SI-SDR / 10 + eSTOI-like)``: 1 dB of SI-SDR weighs as much as 0.1 of intelligibility."""
    return -(si_sdr(estimate, reference).mean() / 10.0
             + estoi_like(spec_estimate, spec_reference, bands, n_frames, step))


#: the losses of the waveform estimators (CompactEnhancer's ``loss``)
LOSSES = ("si_sdr_estoi", "si_sdr", "compressed")


def cosine_schedule(epoch, max_epochs, warmup_epochs=2, final_fraction=0.05):
    """Learning-rate factor of an epoch (0-based): linear warm-up, then a cosine decay to ``final_fraction``."""
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    span = max(1, max_epochs - warmup_epochs)
    progress = min(1.0, (epoch - warmup_epochs) / span)
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


# -- checkpoints ----------------------------------------------------------------------------------------
def _state_arrays(prefix, state):
    return {f"{prefix}{k}": v.detach().cpu().numpy() for k, v in state.items()}


def _optimizer_arrays(optimizer):
    """Adam's per-parameter state as arrays, and its JSON-able remainder."""
    sd = optimizer.state_dict()
    arrays, meta = {}, {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        meta["state"][str(pid)] = []
        for k, v in st.items():
            if torch.is_tensor(v):
                arrays[f"optim:{pid}:{k}"] = v.detach().cpu().numpy()
                meta["state"][str(pid)].append(k)
            else:
                raise CheckpointError(f"optimizer state {k!r} of type {type(v).__name__} cannot be saved")
    return arrays, meta


def save_checkpoint(path, module, optimizer, best_state, meta):
    """Write a checkpoint atomically (a temp file in the same folder, then renamed)."""
    path = Path(path)
    arrays = _state_arrays("module:", module.state_dict())
    if best_state is not None:
        arrays.update(_state_arrays("best:", best_state))
    opt_arrays, opt_meta = _optimizer_arrays(optimizer)
    arrays.update(opt_arrays)
    meta = dict(meta, optimizer=opt_meta, checkpoint_version=_CHECKPOINT_VERSION)
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path, module, optimizer, fingerprint):
    """Restore module and optimizer from a checkpoint; returns (meta, best_state). No pickle."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable training checkpoint ({exc})") from exc
    if meta.get("checkpoint_version") != _CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta.get('checkpoint_version')!r}, "
                              f"expected {_CHECKPOINT_VERSION}")
    if meta.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"{path} belongs to another training (different settings or data): delete it or train without resume"
        )

    def state(prefix):
        return {k[len(prefix):]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(prefix)}

    try:
        module.load_state_dict(state("module:"), strict=True)
        opt = meta["optimizer"]
        opt_state = {int(pid): {k: torch.from_numpy(np.array(arrays[f"optim:{pid}:{k}"])) for k in keys}
                     for pid, keys in opt["state"].items()}
        optimizer.load_state_dict({"state": opt_state, "param_groups": opt["param_groups"]})
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: the checkpoint does not fit this network ({exc})") from exc
    best = state("best:") or None
    return meta, best


# -- the loop ---------------------------------------------------------------------------------------------
_PROGRESS_OVERRIDE = [None]


@contextmanager
def quiet_progress():
    """Within the block, no progress bar even on a terminal (the CLI's ``--quiet``)."""
    old = _PROGRESS_OVERRIDE[0]
    _PROGRESS_OVERRIDE[0] = False
    try:
        yield
    finally:
        _PROGRESS_OVERRIDE[0] = old


@dataclass
class FitResult:
    history: list = field(default_factory=list)
    best_state: dict | None = None
    best_epoch: int = 0
    best_score: float = float("nan")
    stopped: bool = False


class _Bar:
    """tqdm over an epoch's steps, with the loss, the last validation score and the ETA of the whole run."""

    def __init__(self, enabled, name):
        self.enabled = enabled
        self.name = name
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm  # noqa: F401
            except ImportError:
                self.enabled = False

    def start(self, epoch, max_epochs, total, postfix):
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=f"{self.name} epoch {epoch}/{max_epochs}", unit="batch", leave=False,
                        file=sys.stderr, dynamic_ncols=True)
        self.bar.set_postfix_str(postfix)

    def step(self, postfix):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(postfix, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.refresh()  # the epoch's last state, however fast it was
            self.bar.close()
            self.bar = None


def fit_loop(module, optimizer, *, batches, loss, validate=None, mode="min", max_epochs, patience, tol=0.0,
             grad_clip=5.0, lr_factor=None, checkpoint=None, resume=False, fingerprint="", progress=None,
             name="training", verbose=0, n_batches=None):
    """Train ``module`` in place; the one loop of the neural estimators.

    Parameters
    ----------
    module : torch.nn.Module
    optimizer : torch.optim.Optimizer
    batches : callable ``epoch -> iterable of batches``
        ``epoch`` counts from 1. For resume to reproduce an uninterrupted
        run, an epoch's batches must depend on ``epoch`` only (as
        :meth:`DynamicMixer.batches`' do).
    loss : callable ``(module, batch) -> (loss_sum, n_terms)``
        Tensors; the step minimises ``loss_sum / n_terms`` and the epoch's
        training loss is ``sum(loss_sum) / sum(n_terms)``.
    validate : callable ``() -> float`` or None
        The monitored score (e.g. validation SI-SDR in dB, or a validation
        loss); None monitors the training loss.
    mode : {"min", "max"}
        Whether a lower or a higher score is better.
    max_epochs, patience : int
        Stop after ``patience`` epochs without an improvement of more than
        ``tol``; the best epoch's weights are restored at the end.
    grad_clip : float or None
        Largest gradient norm of a step.
    lr_factor : callable ``epoch0 -> float`` or None
        Multiplies the optimizer's base learning rate each epoch
        (``epoch0`` from 0), e.g. :func:`cosine_schedule`.
    checkpoint : path or None
        Written after every epoch (atomically); with ``resume=True`` and an
        existing file, training continues from it.
    fingerprint : str
        Identifies the settings and data; a checkpoint of another
        fingerprint is refused on resume.
    progress : bool or None
        A progress bar (tqdm) on stderr; None shows it when stderr is a
        terminal.
    verbose : int
        Print one line per epoch on stdout.

    Returns
    -------
    FitResult
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    sign = 1.0 if mode == "min" else -1.0  # internally lower is better
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    result = FitResult()
    best_key, stale, start_epoch = math.inf, 0, 1
    if checkpoint is not None and resume and Path(checkpoint).exists():
        meta, result.best_state = load_checkpoint(checkpoint, module, optimizer, fingerprint)
        base_lrs = meta["base_lrs"]
        result.history = meta["history"]
        result.best_epoch, result.best_score = meta["best_epoch"], meta["best_score"]
        best_key = sign * result.best_score if result.best_epoch else math.inf
        stale, start_epoch = meta["stale"], meta["epoch"] + 1
        if meta.get("stopped"):
            result.stopped = True
            start_epoch = max_epochs + 1
        if verbose:
            print(f"{name}: resumed from {checkpoint} after epoch {meta['epoch']}", flush=True)
    show = progress if progress is not None else _PROGRESS_OVERRIDE[0]
    if show is None:
        show = bool(getattr(sys.stderr, "isatty", lambda: False)())
    bar = _Bar(show, name)
    last = "" if not result.history else f"score {result.history[-1]['score']:.3f}"
    try:
        for epoch in range(start_epoch, max_epochs + 1):
            if result.stopped:
                break
            t0 = time.perf_counter()
            factor = 1.0 if lr_factor is None else float(lr_factor(epoch - 1))
            for g, lr in zip(optimizer.param_groups, base_lrs):
                g["lr"] = lr * factor
            module.train()
            total, count, k = 0.0, 0.0, 0
            done = [h["dur"] for h in result.history]
            eta = "" if not done else f", ETA {_fmt_seconds(np.mean(done) * (max_epochs - epoch + 1))}"
            bar.start(epoch, max_epochs, n_batches, last + eta)
            for batch in batches(epoch):
                optimizer.zero_grad()
                loss_sum, n = loss(module, batch)
                if not torch.isfinite(loss_sum):
                    raise FloatingPointError(f"{name}: the loss is {float(loss_sum)} at epoch {epoch}, batch {k}")
                (loss_sum / n).backward()
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
                optimizer.step()
                total += float(loss_sum.detach())
                count += float(n)
                k += 1
                bar.step(f"loss {total / count:.4g}" + (f", {last}" if last else "") + eta)
            bar.close()
            if k == 0:
                raise ValueError(f"{name}: epoch {epoch} has no batches")
            train_loss = total / count
            module.eval()
            score = train_loss if validate is None else float(validate())
            seconds = time.perf_counter() - t0
            result.history.append({"epoch": epoch, "train_loss": train_loss, "score": score,
                                   "lr": base_lrs[0] * factor, "dur": seconds})
            key = sign * score
            if not math.isfinite(key):
                raise FloatingPointError(f"{name}: the monitored score is {score} at epoch {epoch}")
            stale = 0 if key < best_key - tol else stale + 1
            if key < best_key:
                best_key, result.best_epoch, result.best_score = key, epoch, score
                result.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            if stale >= patience:
                result.stopped = True
            last = f"score {score:.3f} (best {result.best_score:.3f} @ {result.best_epoch})"
            if verbose:
                print(f"{name} epoch {epoch}/{max_epochs}: train loss {train_loss:.5f}, score {score:.4f}, "
                      f"best {result.best_score:.4f} at {result.best_epoch}, lr {base_lrs[0] * factor:.2e}, "
                      f"{seconds:.1f} s", flush=True)
            if checkpoint is not None:
                save_checkpoint(checkpoint, module, optimizer, result.best_state, {
                    "fingerprint": fingerprint, "epoch": epoch, "history": result.history,
                    "best_epoch": result.best_epoch, "best_score": result.best_score, "stale": stale,
                    "stopped": result.stopped, "base_lrs": base_lrs,
                })
    finally:
        bar.close()
        for g, lr in zip(optimizer.param_groups, base_lrs):
            g["lr"] = lr
    if result.best_state is None:
        raise FloatingPointError(f"{name}: no epoch gave a finite score")
    module.load_state_dict(result.best_state)
    module.eval()
    return result


def _fmt_seconds(s):
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
