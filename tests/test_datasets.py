"""Tests of the embedded example data (pse_nmf.datasets)."""

import csv
import filecmp
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pse_nmf.datasets import example_path, load_example

DEV_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def example():
    return load_example()


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_example_path_is_the_data_folder(example):
    root = example_path()
    assert root.is_dir()
    assert root == example.root
    assert (root / "speech").is_dir() and (root / "noise").is_dir()


def test_load_example_shapes_and_types(example):
    assert example.sr == 16000
    assert len(example.speech) == 4
    assert len(example.noise) == 3
    for groups, paths, n_per_group in (
        (example.speech, example.speech_paths, 6),
        (example.noise, example.noise_paths, 2),
    ):
        assert list(groups) == list(paths)
        for name, waves in groups.items():
            assert len(waves) == n_per_group == len(paths[name])
            stems = [p.stem for p in paths[name]]
            assert stems == sorted(stems)
            for y, p in zip(waves, paths[name]):
                assert isinstance(p, Path) and p.parent.name == name
                assert y.dtype == np.float32 and y.ndim == 1 and y.size > 0
                assert np.all(np.isfinite(y))
                # Same samples as soundfile reads from the file itself.
                ref, file_sr = sf.read(p, dtype="float32")
                assert file_sr == 16000
                np.testing.assert_array_equal(y, ref)


def test_each_speaker_has_thirty_seconds(example):
    for spk, waves in example.speech.items():
        assert sum(y.size for y in waves) / example.sr >= 30.0, spk


def test_genders_both_present_and_match_speakers_csv(example):
    assert set(example.genders) == set(example.speech)
    assert set(example.genders.values()) == {"M", "F"}
    assert sorted(example.genders.values()) == ["F", "F", "M", "M"]
    rows = {r["speaker_id"]: r for r in _read_csv(example.root / "speakers.csv")}
    for spk, g in example.genders.items():
        assert rows[spk]["gender"] == g
        assert rows[spk]["age_group"] == "adult"
    if DEV_DATA.is_dir():  # cross-check against the developer set's own table
        dev = {r["speaker_id"]: r["gender"] for r in _read_csv(DEV_DATA / "speakers.csv")}
        assert {spk: dev[spk] for spk in example.genders} == example.genders


def test_resampling_to_8k_halves_the_samples(example):
    low = load_example(sr=8000)
    assert low.sr == 8000
    for kind in ("speech", "noise"):
        full, half = getattr(example, kind), getattr(low, kind)
        assert list(full) == list(half)
        for name in full:
            for y16, y8 in zip(full[name], half[name]):
                assert y8.dtype == np.float32
                assert abs(y8.size - y16.size / 2) <= 1


def test_licence_and_attribution_files(example):
    root = example.root
    for name in ("LICENSES.md", "ATTRIBUTION.csv", "manifest.csv", "speakers.csv"):
        assert (root / name).is_file(), name
    licences = (root / "LICENSES.md").read_text(encoding="utf-8")
    for needle in ("speechocean762", "Apache-2.0", "Interspeech 2021", "CC BY 4.0", "Thomas Rosen", "1804.03209"):
        assert needle in licences, needle
    assert "LICENSES.md" in example.DESCR

    shipped_noise = {p.relative_to(root).as_posix() for ps in example.noise_paths.values() for p in ps}
    shipped_speech = {p.relative_to(root).as_posix() for ps in example.speech_paths.values() for p in ps}
    attribution = _read_csv(root / "ATTRIBUTION.csv")
    assert {r["path"] for r in attribution} == shipped_noise
    for r in attribution:
        assert r["author"] and r["source_url"].startswith("http") and r["license"].startswith("CC")
        assert Path(r["path"]).name in licences  # CC BY: title/author/URL per clip in LICENSES.md
    manifest = _read_csv(root / "manifest.csv")
    assert {r["path"] for r in manifest} == shipped_noise | shipped_speech
    for r in manifest:
        assert (root / r["path"]).is_file()
        assert abs(sf.info(root / r["path"]).duration - float(r["duration_s"])) < 0.01


def test_data_folder_under_5_mb():
    total = sum(p.stat().st_size for p in example_path().rglob("*") if p.is_file())
    assert total < 5_000_000


def test_audio_is_copied_unchanged_from_dev_set(example):
    if not DEV_DATA.is_dir():
        pytest.skip(f"developer set not found at {DEV_DATA}")
    for paths in (example.speech_paths, example.noise_paths):
        for files in paths.values():
            for p in files:
                original = DEV_DATA / p.relative_to(example.root)
                assert filecmp.cmp(p, original, shallow=False), p
