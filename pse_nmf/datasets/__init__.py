"""Data: the example data shipped with pse_nmf, and recordings and tasks from folders.

:func:`load_example` / :func:`example_path` give the bundled example set;
:func:`list_recordings`, :func:`load_recordings`, :func:`mix_at_snr` and
:func:`make_personalization_task` build personalization tasks from any
speech and noise folders.

The example set is a small offline subset of the developer audio set: 4 adult speakers (2 male,
2 female) with 6 read utterances each (about 39 s per speaker), and 3 noise
types of different character with 2 clips of 10 s each. Licences and
attribution are in ``example_path() / "LICENSES.md"``.
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

from sklearn.utils import Bunch

from ..audio._io import read_audio
from ._tasks import (
    PersonalizationTask,
    TestMixture,
    list_recordings,
    load_recordings,
    make_personalization_task,
    mix_at_snr,
)

__all__ = [
    "example_path",
    "load_example",
    "list_recordings",
    "load_recordings",
    "mix_at_snr",
    "make_personalization_task",
    "PersonalizationTask",
    "TestMixture",
]

_DESCR = """\
pse_nmf example data
--------------------

Speech: 4 adult speakers of speechocean762 (read English, Mandarin L1), 2 male
(so762_9626, so762_9628) and 2 female (so762_9604, so762_9618), 6 utterances
each, about 39 s per speaker. Clean-ish read speech recorded outside a studio;
a low noise floor remains.

Noise: 3 types, 2 clips of 10 s each:
- running_tap (stationary; Speech Commands background noise, CC BY 4.0)
- street_tram_bus (street babble and traffic; Berlin Noise by Thomas Rosen, CC BY 4.0)
- dishes (clattering events; Speech Commands background noise, CC BY 4.0)

Noise levels are not normalised (about -26 to -54 dBFS RMS): mix at a chosen
SNR with pse_nmf's mix_at_snr.

Licences: speech Apache-2.0 (cite Zhang et al., "speechocean762: An Open-Source
Non-native English Speech Corpus For Pronunciation Assessment", Interspeech
2021); noise CC BY 4.0 with per-clip title, author and URL. See LICENSES.md,
ATTRIBUTION.csv, manifest.csv and speakers.csv in the data folder
(``example_path()``).
"""


def example_path():
    """Folder of the example data.

    Returns
    -------
    root : Path
        Folder holding ``speech/<speaker_id>/<utt>.flac``,
        ``noise/<noise_type>/<clip>.flac``, ``manifest.csv``,
        ``speakers.csv``, ``ATTRIBUTION.csv`` and ``LICENSES.md``.

    Raises
    ------
    FileNotFoundError
        If the data are missing from the installation.

    Examples
    --------
    >>> root = example_path()
    >>> (root / "LICENSES.md").is_file()
    True
    """
    data = resources.files(__name__).joinpath("data")
    # A regular (or editable) install gives a real folder; fall back to the
    # module's location for loaders whose Traversable is not a Path.
    root = data if isinstance(data, Path) else Path(__file__).resolve().parent / "data"
    if not (root / "speech").is_dir() or not (root / "noise").is_dir():
        raise FileNotFoundError(
            f"pse_nmf example data not found in {str(root)!r}; the installation lacks its package data"
        )
    return root


def _read_genders(path):
    with open(path, newline="", encoding="utf-8") as f:
        return {row["speaker_id"]: row["gender"] for row in csv.DictReader(f)}


def load_example(sr=16000):
    """Load the example speech and noise.

    Parameters
    ----------
    sr : int, default=16000
        Sample rate to resample to (the files are 16 kHz).

    Returns
    -------
    data : sklearn.utils.Bunch
        With keys:

        speech : dict of str to list of ndarray of shape (n_samples,)
            Speaker id -> float32 utterances, sorted by utterance id.
        noise : dict of str to list of ndarray of shape (n_samples,)
            Noise type -> float32 clips, sorted by clip name.
        speech_paths, noise_paths : dict of str to list of Path
            The files behind ``speech`` and ``noise``, in the same order.
        genders : dict of str to str
            Speaker id -> ``"M"`` or ``"F"``.
        sr : int
            Sample rate of the waveforms.
        root : Path
            The data folder (pass ``root / "speech"`` and ``root / "noise"``
            to :func:`pse_nmf.make_personalization_task`).
        DESCR : str
            Description, with a pointer to the licences.

    Examples
    --------
    >>> data = load_example()
    >>> sorted(data.genders.items())
    [('so762_9604', 'F'), ('so762_9618', 'F'), ('so762_9626', 'M'), ('so762_9628', 'M')]
    >>> sorted(data.noise)
    ['dishes', 'running_tap', 'street_tram_bus']
    """
    root = example_path()
    speech_paths = list_recordings(root / "speech")
    noise_paths = list_recordings(root / "noise")

    def read_all(paths):
        return {group: [read_audio(p, sr=sr)[0] for p in files] for group, files in paths.items()}

    speech = read_all(speech_paths)
    noise = read_all(noise_paths)
    genders = _read_genders(root / "speakers.csv")
    return Bunch(
        speech=speech,
        noise=noise,
        speech_paths=speech_paths,
        noise_paths=noise_paths,
        genders={spk: genders[spk] for spk in speech},
        sr=int(sr),
        root=root,
        DESCR=_DESCR,
    )
