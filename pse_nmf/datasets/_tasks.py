"""Data tools for personalized speech enhancement (PSE).

Folders of recordings, mixing at a given SNR, and the personalization task:
enrollment speech of one speaker, optional noisy recordings of that speaker,
and held-out test mixtures at several SNRs.

Recording folders are laid out ``<group>/<file>``: ``<speaker_id>/<utt>.flac``
for speech, ``<noise_type>/<clip>.flac`` for noise (the layout of the
developer set and of :func:`pse_nmf.datasets.load_example`).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state

from ..audio._io import AUDIO_EXTENSIONS, check_waveform, read_audio

__all__ = [
    "list_recordings",
    "load_recordings",
    "mix_at_snr",
    "make_personalization_task",
    "PersonalizationTask",
    "TestMixture",
]

# How many known ids an "unknown speaker / noise type" error lists.
_N_SHOWN_IDS = 8
# Noise draws tried per utterance before giving up on silent excerpts.
_MAX_NOISE_DRAWS = 20


class _SilentExcerptError(ValueError):
    """The chosen stretch of an otherwise non-silent noise is all zeros."""


def _is_audio_file(path):
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in AUDIO_EXTENSIONS


def list_recordings(root):
    """List the audio files of a folder laid out ``<group>/<file>``.

    Parameters
    ----------
    root : str or path-like
        Folder whose subfolders are the groups (speakers or noise types),
        each holding audio files whose suffix is in
        :data:`pse_nmf.audio.AUDIO_EXTENSIONS` (case-insensitive). Hidden
        entries (names starting with ``"."``) and loose files directly in
        ``root`` are ignored.

    Returns
    -------
    recordings : dict of str to list of Path
        Group name -> its audio files, groups and files sorted by name.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist.
    NotADirectoryError
        If ``root`` is not a folder.
    ValueError
        If ``root`` has no group subfolders, or a group holds no audio file.

    Examples
    --------
    >>> from pse_nmf.datasets import example_path
    >>> recs = list_recordings(example_path() / "noise")
    >>> sorted(recs)
    ['dishes', 'running_tap', 'street_tram_bus']
    >>> len(recs["dishes"])
    2
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"recordings folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{str(root)!r} is not a folder; expected a folder laid out <group>/<file>")
    groups = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not groups:
        raise ValueError(
            f"{str(root)!r} has no group subfolders; expected <group>/<file> "
            "(e.g. <speaker_id>/<utt>.flac or <noise_type>/<clip>.flac)"
        )
    recordings = {}
    for group in groups:
        files = sorted((p for p in group.iterdir() if _is_audio_file(p)), key=lambda p: p.name)
        if not files:
            raise ValueError(
                f"group {group.name!r} in {str(root)!r} holds no audio file "
                f"(looked for {', '.join(AUDIO_EXTENSIONS)})"
            )
        recordings[group.name] = files
    return recordings


def _is_path(item):
    return isinstance(item, (str, os.PathLike))


def _as_groups(source, *, name):
    """Group -> list of items (Path or array-like), reading nothing."""
    if _is_path(source):
        return list_recordings(source)
    if not isinstance(source, Mapping):
        raise TypeError(
            f"{name} must be a folder laid out <group>/<file> or a mapping group -> "
            f"list of waveforms or paths, got {type(source).__name__}"
        )
    if len(source) == 0:
        raise ValueError(f"{name} is an empty mapping: no groups")
    groups = {}
    for group, items in source.items():
        if _is_path(items) or isinstance(items, np.ndarray) or not hasattr(items, "__iter__"):
            raise TypeError(
                f"{name}[{group!r}] must be a list of waveforms or paths, got {type(items).__name__}"
            )
        items = list(items)
        if not items:
            raise ValueError(f"{name}[{group!r}] is empty: no recordings")
        groups[group] = [Path(x) if _is_path(x) else x for x in items]
    return groups


def _item_id(group, index, item):
    return item.stem if isinstance(item, Path) else f"{group}[{index}]"


def _load_item(item, *, name, sr, downmix):
    if isinstance(item, Path):
        y, _ = read_audio(item, sr=sr, downmix=downmix)
        return y
    return check_waveform(item, name=name, downmix=downmix)


def load_recordings(source, sr=16000, downmix=False):
    """Load recordings grouped by speaker or noise type.

    Parameters
    ----------
    source : str, path-like or mapping
        A folder laid out ``<group>/<file>`` (see :func:`list_recordings`),
        or a mapping group -> list of waveforms (array-like of shape
        (n_samples,), taken to be at rate ``sr`` already) or audio paths.
    sr : int, default=16000
        Rate the files are resampled to.
    downmix : bool, default=False
        Average the channels of multichannel recordings; without it they are
        an error.

    Returns
    -------
    recordings : dict of str to list of ndarray of shape (n_samples,)
        Group -> its float32 waveforms, in the order of ``source`` (sorted by
        name for a folder).

    Raises
    ------
    ValueError
        For an empty group, or an invalid waveform (empty, NaN/inf,
        multichannel without ``downmix``).

    Examples
    --------
    >>> import numpy as np
    >>> recs = load_recordings({"spk": [np.zeros(8, dtype=np.int16), [0.1, -0.1]]})
    >>> [(x.dtype, x.shape) for x in recs["spk"]]
    [(dtype('float32'), (8,)), (dtype('float32'), (2,))]
    """
    groups = _as_groups(source, name="source")
    return {
        group: [
            _load_item(item, name=f"{group}[{i}]", sr=sr, downmix=downmix) for i, item in enumerate(items)
        ]
        for group, items in groups.items()
    }


def _check_snr(snr_db, name="snr_db"):
    if isinstance(snr_db, bool) or not isinstance(snr_db, numbers.Real) or not np.isfinite(snr_db):
        raise ValueError(f"{name} must be a finite number of dB, got {snr_db!r}")
    return float(snr_db)


def mix_at_snr(speech, noise, snr_db, *, random_state=None):
    r"""Add noise to speech at an exact signal-to-noise ratio.

    The noise is cut to the length of the speech, starting at a random
    offset; a noise shorter than the speech is tiled (repeated) from a random
    offset. The excerpt :math:`n` is then scaled by :math:`g` so that

    .. math::

        10 \log_{10} \frac{\sum_t s_t^2}{\sum_t (g\, n_t)^2} = \mathrm{SNR}_{dB},
        \qquad g = \sqrt{\frac{\sum_t s_t^2}{10^{\mathrm{SNR}_{dB}/10} \sum_t n_t^2}}.

    The SNR is global (over the whole utterance, pauses included). The
    mixture is not clipped and can exceed [-1, 1] at low SNR.

    Parameters
    ----------
    speech : array-like of shape (n_samples,)
        Clean speech.
    noise : array-like of shape (n_noise_samples,)
        Noise, any length.
    snr_db : float
        Target SNR in dB.
    random_state : int, RandomState instance or None, default=None
        Draws the noise offset. Pass an int for reproducible output.

    Returns
    -------
    mixture : ndarray of shape (n_samples,)
        ``speech + scaled_noise``, float32.
    scaled_noise : ndarray of shape (n_samples,)
        The noise actually added, float32.

    Raises
    ------
    ValueError
        For empty or non-finite input, silent (all-zero) speech or noise, a
        silent noise excerpt, or a non-finite ``snr_db``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> s, n = rng.standard_normal(1600), rng.standard_normal(400)
    >>> mixture, scaled = mix_at_snr(s, n, 5.0, random_state=0)
    >>> mixture.shape, scaled.dtype
    ((1600,), dtype('float32'))
    >>> s32 = s.astype(np.float32)
    >>> round(float(10 * np.log10(np.sum(s32.astype(float) ** 2) / np.sum(scaled.astype(float) ** 2))), 3)
    5.0
    """
    speech = check_waveform(speech, name="speech")
    noise = check_waveform(noise, name="noise")
    snr_db = _check_snr(snr_db)
    rng = check_random_state(random_state)

    s = speech.astype(np.float64)
    speech_energy = float(np.dot(s, s))
    if speech_energy == 0.0:
        raise ValueError("speech is silent (all zeros): the SNR is undefined")
    nz = noise.astype(np.float64)
    if float(np.dot(nz, nz)) == 0.0:
        raise ValueError("noise is silent (all zeros): it cannot be scaled to an SNR")

    n_samples, n_noise = s.size, nz.size
    if n_noise >= n_samples:
        start = int(rng.randint(n_noise - n_samples + 1))
        excerpt = nz[start : start + n_samples]
    else:
        start = int(rng.randint(n_noise))
        excerpt = nz[(start + np.arange(n_samples)) % n_noise]
    noise_energy = float(np.dot(excerpt, excerpt))
    if noise_energy == 0.0:
        raise _SilentExcerptError(
            f"the noise excerpt at offset {start} ({n_samples} samples) is silent (all zeros); "
            "use another noise clip or random_state"
        )

    gain = np.sqrt(speech_energy / (noise_energy * 10.0 ** (snr_db / 10.0)))
    scaled = excerpt * gain
    mixture = s + scaled
    if not (np.all(np.isfinite(scaled)) and np.all(np.isfinite(mixture))):
        raise ValueError(f"scaling the noise to {snr_db} dB overflows (gain {gain:.3g})")
    return mixture.astype(np.float32), scaled.astype(np.float32)


@dataclass(eq=False, repr=False)
class TestMixture:
    """One test mixture of a :class:`PersonalizationTask`.

    Attributes
    ----------
    mixture : ndarray of shape (n_samples,)
        ``speech + noise``, float32.
    speech : ndarray of shape (n_samples,)
        The clean test utterance (the reference).
    noise : ndarray of shape (n_samples,)
        The scaled noise actually added.
    snr_db : float
        SNR of the mixture in dB.
    noise_type : str
        Noise group the clip came from.
    utterance : str
        Id of the test utterance (file stem, or ``"<speaker>[<index>]"`` for
        an in-memory waveform).
    noise_clip : str
        Id of the noise clip, formed the same way.
    """

    __test__ = False  # the name starts with "Test": keep pytest from collecting it

    mixture: np.ndarray
    speech: np.ndarray
    noise: np.ndarray
    snr_db: float
    noise_type: str
    utterance: str
    noise_clip: str = ""

    def __repr__(self):
        return (
            f"TestMixture(utterance={self.utterance!r}, noise_type={self.noise_type!r}, "
            f"noise_clip={self.noise_clip!r}, snr_db={self.snr_db:g}, n_samples={self.mixture.size})"
        )


@dataclass(eq=False, repr=False)
class PersonalizationTask:
    """Data of one personalization experiment for one speaker.

    Built by :func:`make_personalization_task`.

    Attributes
    ----------
    speaker : str
        Target speaker id.
    sr : int
        Sample rate of every waveform.
    enrollment : list of ndarray of shape (n_samples,)
        Clean enrollment utterances of the speaker (float32).
    noisy : list of ndarray of shape (n_samples,)
        Noisy-only recordings of the speaker (float32), made from utterances
        used neither for enrollment nor for test.
    test : list of TestMixture
        Held-out utterances mixed with noise, ``len(snrs)`` per utterance.
    enrollment_utterances : list of str
        Ids of the enrollment utterances, in the order of ``enrollment``.
    noisy_utterances : list of str
        Ids of the utterances behind ``noisy``.
    """

    speaker: str
    sr: int
    enrollment: list
    noisy: list
    test: list
    enrollment_utterances: list = field(default_factory=list)
    noisy_utterances: list = field(default_factory=list)

    @property
    def enrollment_seconds(self):
        """Total duration of the enrollment speech in seconds."""
        return sum(x.size for x in self.enrollment) / self.sr

    def __repr__(self):
        n_utts = len({t.utterance for t in self.test})
        return (
            f"PersonalizationTask(speaker={self.speaker!r}, sr={self.sr}, "
            f"enrollment={len(self.enrollment)} utterances / {self.enrollment_seconds:.1f} s, "
            f"noisy={len(self.noisy)}, test={len(self.test)} mixtures of {n_utts} utterances)"
        )


def _unknown(kind, value, known):
    known = list(known)
    shown = ", ".join(repr(k) for k in known[:_N_SHOWN_IDS])
    more = f", ... ({len(known)} in all)" if len(known) > _N_SHOWN_IDS else ""
    return ValueError(f"unknown {kind} {value!r}; known: {shown}{more}")


def _check_int(value, name, minimum, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def make_personalization_task(
    speech,
    noise,
    speaker,
    *,
    enroll_seconds=30.0,
    snrs=(-5, 0, 5),
    n_test=None,
    n_noisy=0,
    noise_types=None,
    sr=16000,
    random_state=0,
):
    """Build the enrollment, noisy and test data of one speaker.

    The speaker's utterances are shuffled (seeded). Enrollment takes them in
    that order until it holds at least ``enroll_seconds`` of speech. The
    utterances left are test utterances (the first ``n_test`` of them if
    given, else all but ``n_noisy``); the next ``n_noisy`` become noisy-only
    recordings. No utterance serves two roles.

    Each test utterance gets one noise clip (a noise type drawn uniformly
    from ``noise_types``, then a clip of it uniformly) and one noise offset,
    and is mixed with that same excerpt at every SNR of ``snrs`` (see
    :func:`mix_at_snr`); results across SNRs then differ only in level. Each
    noisy-only recording is mixed the same way at an SNR drawn from ``snrs``.

    Only the files the task needs are read: the target speaker's
    utterances and the chosen noise clips.

    Parameters
    ----------
    speech : str, path-like or mapping
        Folder laid out ``<speaker_id>/<utt>.<ext>``, or a mapping speaker ->
        list of waveforms or paths (see :func:`load_recordings`).
    noise : str, path-like or mapping
        Folder laid out ``<noise_type>/<clip>.<ext>``, or a mapping noise
        type -> list of waveforms or paths.
    speaker : str
        Target speaker id (a key of ``speech``).
    enroll_seconds : float, default=30.0
        Least amount of enrollment speech, in seconds.
    snrs : sequence of float, default=(-5, 0, 5)
        Test SNRs in dB.
    n_test : int or None, default=None
        Most test utterances; ``None`` uses every utterance left after
        enrollment and the noisy-only recordings.
    n_noisy : int, default=0
        Noisy-only recordings of the speaker to make.
    noise_types : str, sequence of str or None, default=None
        Noise types to draw from; ``None`` uses all.
    sr : int, default=16000
        Rate files are resampled to. In-memory waveforms are taken to be at
        this rate.
    random_state : int, RandomState instance or None, default=0
        Drives the shuffle, the noise choice and the noise offsets. The same
        int gives the same task.

    Returns
    -------
    task : PersonalizationTask

    Raises
    ------
    ValueError
        For an unknown speaker or noise type, a speaker without more than
        ``enroll_seconds`` of speech plus one test utterance, too few
        utterances for ``n_noisy``, or invalid parameters.

    Examples
    --------
    >>> from pse_nmf.datasets import example_path
    >>> root = example_path()
    >>> task = make_personalization_task(root / "speech", root / "noise", "so762_9604",
    ...                                  enroll_seconds=20, n_test=2, snrs=(0, 5))
    >>> task.enrollment_seconds >= 20, len(task.test)
    (True, 4)
    >>> sorted({t.snr_db for t in task.test})
    [0.0, 5.0]
    """
    if isinstance(enroll_seconds, bool) or not isinstance(enroll_seconds, numbers.Real) or not (
        np.isfinite(enroll_seconds) and enroll_seconds > 0
    ):
        raise ValueError(f"enroll_seconds must be a positive number, got {enroll_seconds!r}")
    if isinstance(snrs, numbers.Real):
        snrs = (snrs,)
    snrs = [_check_snr(v, name="each of snrs") for v in snrs]
    if not snrs:
        raise ValueError("snrs is empty: give at least one SNR in dB")
    n_test = _check_int(n_test, "n_test", 1, allow_none=True)
    n_noisy = _check_int(n_noisy, "n_noisy", 0)
    sr = _check_int(sr, "sr", 1)
    rng = check_random_state(random_state)

    speech_groups = _as_groups(speech, name="speech")
    if speaker not in speech_groups:
        raise _unknown("speaker", speaker, speech_groups)
    noise_groups = _as_groups(noise, name="noise")
    if noise_types is None:
        noise_types = list(noise_groups)
    else:
        if isinstance(noise_types, str):
            noise_types = [noise_types]
        noise_types = list(noise_types)
        if not noise_types:
            raise ValueError("noise_types is empty; pass None to use every noise type")
        for nt in noise_types:
            if nt not in noise_groups:
                raise _unknown("noise type", nt, noise_groups)

    items = speech_groups[speaker]
    ids = [_item_id(speaker, i, it) for i, it in enumerate(items)]
    cache = {}

    def utterance(i):
        if i not in cache:
            cache[i] = _load_item(items[i], name=ids[i], sr=sr, downmix=False)
        return cache[i]

    order = [int(i) for i in rng.permutation(len(items))]
    need = enroll_seconds * sr
    n_enroll, total = 0, 0
    while total < need and n_enroll < len(order):
        total += utterance(order[n_enroll]).size
        n_enroll += 1
    pool = order[n_enroll:]
    if total < need or not pool:
        all_s = sum(utterance(i).size for i in order) / sr
        raise ValueError(
            f"speaker {speaker!r} has {len(items)} utterances ({all_s:.1f} s): not more than "
            f"enroll_seconds={enroll_seconds:g} s of enrollment plus at least one test utterance; "
            "lower enroll_seconds"
        )
    n_t = len(pool) - n_noisy if n_test is None else min(n_test, len(pool))
    if n_t < 1 or n_t + n_noisy > len(pool):
        raise ValueError(
            f"speaker {speaker!r} has {len(pool)} utterance(s) left after enrollment: not enough "
            f"for n_noisy={n_noisy} noisy recording(s) and at least one test utterance "
            f"(n_test={n_test}); lower n_noisy or enroll_seconds"
        )
    enroll_idx, test_idx, noisy_idx = order[:n_enroll], pool[:n_t], pool[n_t : n_t + n_noisy]

    noise_cache = {}

    def draw_noise():
        nt = noise_types[rng.randint(len(noise_types))]
        clips = noise_groups[nt]
        j = int(rng.randint(len(clips)))
        if (nt, j) not in noise_cache:
            noise_cache[nt, j] = _load_item(clips[j], name=f"noise {nt}[{j}]", sr=sr, downmix=False)
        # One int seed per utterance: every SNR of it reuses the same noise offset.
        seed = int(rng.randint(np.iinfo(np.int32).max))
        return nt, _item_id(nt, j, clips[j]), noise_cache[nt, j], seed

    def mix_all(s, snr_list):
        # Event noises (barks, sneezes) hold stretches of digital silence; an
        # excerpt that is all zeros cannot be scaled, so draw again.
        for _ in range(_MAX_NOISE_DRAWS):
            nt, clip_id, clip, seed = draw_noise()
            try:
                mixes = [mix_at_snr(s, clip, snr, random_state=seed) for snr in snr_list]
            except _SilentExcerptError:
                continue
            return nt, clip_id, mixes
        raise ValueError(
            f"{_MAX_NOISE_DRAWS} noise excerpts drawn from {noise_types} were all silent; "
            "choose other noise types"
        )

    test = []
    for i in test_idx:
        s = utterance(i)
        nt, clip_id, mixes = mix_all(s, snrs)
        for snr, (mixture, scaled) in zip(snrs, mixes):
            test.append(TestMixture(mixture, s, scaled, snr, nt, ids[i], clip_id))

    noisy = []
    for i in noisy_idx:
        snr = snrs[rng.randint(len(snrs))]
        s = _load_item(items[i], name=ids[i], sr=sr, downmix=False)
        noisy.append(mix_all(s, [snr])[2][0][0])

    return PersonalizationTask(
        speaker=speaker,
        sr=sr,
        enrollment=[utterance(i) for i in enroll_idx],
        noisy=noisy,
        test=test,
        enrollment_utterances=[ids[i] for i in enroll_idx],
        noisy_utterances=[ids[i] for i in noisy_idx],
    )
