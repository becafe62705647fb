"""Tests of the ``pse-nmf`` command line interface and the demo.

``main([...])`` runs in-process on real audio files written to ``tmp_path``
from the example data shipped with the package. ``run_demo`` and ``MODELS``
come from private modules (``pse_nmf._demo``, ``pse_nmf._cli``): the public
``__init__`` does not export them yet.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import pse_nmf
from pse_nmf import SemiSupervisedNMF
from pse_nmf import load as load_model
from pse_nmf._cli import MODELS, main
from pse_nmf._demo import run_demo
from pse_nmf.audio import read_audio, resample
from pse_nmf.datasets import mix_at_snr
from pse_nmf.metrics import si_sdr

SR = 16000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audio(example, tmp_path_factory):
    """Files of one example speaker: train/ (2 utterances), clean.wav and a 0 dB noisy.wav.

    Shared by the tests of this module: copy a file before writing beside it.
    """
    root = tmp_path_factory.mktemp("audio")
    speaker = sorted(example.speech)[0]
    utterances = example.speech[speaker]
    (root / "train").mkdir()
    for i, u in enumerate(utterances[:2]):
        sf.write(root / "train" / f"u{i}.wav", u, SR)
    clean = utterances[-1]
    noisy, _ = mix_at_snr(clean, example.noise["running_tap"][0], 0.0, random_state=0)
    gain = 0.9 / max(np.max(np.abs(noisy)), np.max(np.abs(clean)))  # keep 16-bit PCM unclipped
    sf.write(root / "clean.wav", clean * gain, SR)
    sf.write(root / "noisy.wav", noisy * gain, SR)
    sf.write(root / "noise.wav", example.noise["running_tap"][1], SR)
    return root


@pytest.fixture(scope="module")
def model_file(audio):
    """A small model fitted through the CLI (fast settings)."""
    path = audio / "model.npz"
    rc = main(["fit", "-o", str(path), "--n-components", "8", "--max-iter", "15", "--seed", "0",
               "--set", "n_noise_components=4", "--set", "test_max_iter=30", str(audio / "train")])
    assert rc == 0
    return path


@pytest.fixture
def noisy(audio, tmp_path):
    """A private copy of noisy.wav in this test's folder."""
    return shutil.copy(audio / "noisy.wav", tmp_path / "noisy.wav")


def _temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# -- general ---------------------------------------------------------------------------------------
def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pse-nmf {pse_nmf.__version__}"


@pytest.mark.parametrize("argv, message", [
    ([], "choose a command"),
    (["frobnicate"], "invalid choice"),
    (["fit", "x.wav"], "required: -o"),
    (["fit", "--model", "nope", "-o", "m.npz", "x.wav"], "invalid choice"),
    (["fit", "--n-components", "0", "-o", "m.npz", "x.wav"], "positive integer"),
    (["fit", "--set", "n_noise_components", "-o", "m.npz", "x.wav"], "NAME=VALUE"),
    (["denoise", "x.wav"], "required: -m"),
    (["evaluate", "a.wav", "--metrics", "pesq"], "need(s) --reference"),  # no reference: DNSMOS only (issue 17)
    (["evaluate", "a.wav", "--reference", "b.wav", "--metrics", "si_sdr,loudness"], "unknown metric"),
])
def test_usage_errors_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_python_m_exits_with_main_status():
    proc = subprocess.run([sys.executable, "-m", "pse_nmf", "evaluate"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "usage: pse-nmf evaluate" in proc.stderr


def test_models_registry():
    from pse_nmf import MLD, USM, ExemplarNMF, OnlineNMF

    assert MODELS == {"semi": SemiSupervisedNMF, "usm": USM, "mld": MLD, "exemplar": ExemplarNMF,
                      "online": OnlineNMF}


def test_fit_usm_on_a_folder_of_speaker_folders(example, tmp_path, capsys):
    from pse_nmf import USM

    for speaker in sorted(example.speech)[:2]:
        (tmp_path / "speakers" / speaker).mkdir(parents=True)
        sf.write(tmp_path / "speakers" / speaker / "u0.wav", example.speech[speaker][0], SR)
    out = tmp_path / "usm.npz"
    assert main(["fit", "--model", "usm", "-o", str(out), "--max-iter", "10", "--seed", "0",
                 "--set", "n_components_per_speaker=3", str(tmp_path / "speakers")]) == 0
    model = load_model(out, expected=USM)
    assert model.speakers_ == sorted(example.speech)[:2]
    assert model.components_.shape == (6, 513)


def test_fit_usm_refuses_files(audio, tmp_path, capsys):
    assert main(["fit", "--model", "usm", "-o", str(tmp_path / "m.npz"), str(audio / "clean.wav")]) == 1
    assert "speaker folders" in capsys.readouterr().err


# -- fit -------------------------------------------------------------------------------------------
def test_fit_saves_a_model_with_the_options(model_file, capsys):
    model = load_model(model_file)
    assert isinstance(model, SemiSupervisedNMF)
    assert model.components_.shape == (8, 513)
    assert (model.n_components, model.n_noise_components, model.test_max_iter, model.random_state) == (8, 4, 30, 0)


def test_fit_known_noise(audio, tmp_path, capsys):
    path = tmp_path / "noise_model.npz"
    rc = main(["fit", "--known", "noise", "-o", str(path), "--n-components", "4", "--max-iter", "5",
               str(audio / "noise.wav")])
    assert rc == 0, capsys.readouterr().err
    assert "of noise" in capsys.readouterr().out
    assert load_model(path).known == "noise"


def test_fit_refuses_existing_model_before_fitting(audio, tmp_path, capsys):
    path = tmp_path / "model.npz"
    path.write_bytes(b"keep me")
    assert main(["fit", "-o", str(path), str(audio / "train")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pse-nmf: error:") and "exists" in err and "--overwrite" in err
    assert path.read_bytes() == b"keep me"


@pytest.mark.parametrize("case, message", [
    ("empty_folder", "no audio files"),
    ("audio_output", "audio extension"),
    ("missing_input", "no audio file at"),
    ("unknown_param", "has no parameter 'frobnication'"),
    ("renamed_param", "calls this parameter 'n_noise_components' now"),
    ("removed_param", "--set mask_power: SemiSupervisedNMF no longer has this parameter; it always uses mask_power=2.0"),
    ("folded_param", "--set quiet_noise_iter: USM no longer has this parameter; use noise_init instead"),
])
def test_fit_errors(case, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv = {
        "empty_folder": ["fit", "-o", str(tmp_path / "m.npz"), str(tmp_path / "empty")],
        "audio_output": ["fit", "-o", str(tmp_path / "m.wav"), str(tmp_path / "empty")],
        "missing_input": ["fit", "-o", str(tmp_path / "m.npz"), str(tmp_path / "nothing.wav")],
        "unknown_param": ["fit", "-o", str(tmp_path / "m.npz"), "--set", "frobnication=1",
                          str(tmp_path / "empty")],
        "renamed_param": ["fit", "-o", str(tmp_path / "m.npz"), "--set", "n_test_components=4",
                          str(tmp_path / "empty")],
        "removed_param": ["fit", "-o", str(tmp_path / "m.npz"), "--set", "mask_power=1", str(tmp_path / "empty")],
        "folded_param": ["fit", "--model", "usm", "-o", str(tmp_path / "m.npz"), "--set", "quiet_noise_iter=100",
                         str(tmp_path / "empty")],
    }[case]
    assert main(argv) in (1, 2)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists() and _temp_files(tmp_path) == []


# -- denoise ---------------------------------------------------------------------------------------
def test_round_trip_fit_denoise_evaluate(audio, model_file, noisy, tmp_path, capsys):
    assert main(["denoise", "-m", str(model_file), str(noisy)]) == 0
    out = tmp_path / "noisy_enhanced.wav"
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0]
    info_in, info_out = sf.info(str(noisy)), sf.info(str(out))
    assert (info_out.samplerate, info_out.frames, info_out.channels) == (SR, info_in.frames, 1)

    clean = audio / "clean.wav"
    assert main(["evaluate", str(out), "--reference", str(clean), "--mixture", str(noisy)]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header == ["file", "si_sdr_mixture", "si_sdr", "si_sdr_i", "pesq_mixture", "pesq", "pesq_i",
                      "estoi_mixture", "estoi", "estoi_i"]

    assert main(["evaluate", str(out), "--reference", str(clean), "--mixture", str(noisy), "--json",
                 "--metrics", "si_sdr,estoi"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    enhanced_audio, _ = read_audio(out)
    clean_audio, _ = read_audio(clean)
    noisy_audio, _ = read_audio(noisy)
    assert record["si_sdr"] == pytest.approx(si_sdr(enhanced_audio, clean_audio), rel=1e-6)
    assert record["si_sdr_mixture"] == pytest.approx(si_sdr(noisy_audio, clean_audio), rel=1e-6)
    assert record["si_sdr_i"] > 0  # the model did enhance
    assert set(record) == {"enhanced", "reference", "mixture", "si_sdr", "si_sdr_mixture", "si_sdr_i", "estoi",
                           "estoi_mixture", "estoi_i"}


def test_denoise_keeps_other_rate_length_and_format(model_file, audio, tmp_path, capsys):
    y, _ = read_audio(audio / "noisy.wav")
    y22 = resample(y, SR, 22050)[:-3]  # an odd length too
    src = tmp_path / "noisy22.wav"
    sf.write(src, y22, 22050, subtype="FLOAT")
    out = tmp_path / "out.wav"
    assert main(["denoise", "-m", str(model_file), str(src), "-o", str(out)]) == 0
    info = sf.info(str(out))
    assert (info.samplerate, info.frames, info.subtype) == (22050, y22.size, "FLOAT")
    enhanced, _ = sf.read(out, dtype="float32")
    assert not np.allclose(enhanced, y22, atol=1e-3)


def test_denoise_stream_matches_online_nmf_and_keeps_the_input(model_file, noisy, tmp_path, capsys):
    from pse_nmf import OnlineNMF

    before = noisy.read_bytes()
    out = tmp_path / "streamed.wav"
    assert main(["denoise", "--stream", "--block-size", "3000", "-m", str(model_file), str(noisy),
                 "-o", str(out)]) == 0
    assert noisy.read_bytes() == before
    y, sr = read_audio(noisy, sr=None)
    got, got_sr = sf.read(out, dtype="float32")
    assert (got_sr, got.size) == (sr, y.size)
    speech_model = load_model(model_file)
    expected = OnlineNMF(speech_model=speech_model, random_state=0).fit().denoise(y, sr=sr)
    np.testing.assert_allclose(got, expected, atol=2.0 / 32768)  # 16-bit output


def test_denoise_several_inputs_into_a_new_folder(model_file, audio, noisy, tmp_path, capsys):
    second = shutil.copy(audio / "clean.wav", tmp_path / "second.flac")  # a FLAC input stays FLAC
    sf.write(second, read_audio(audio / "clean.wav")[0], SR, format="FLAC")
    out_dir = tmp_path / "out" / "nested"
    assert main(["denoise", "-m", str(model_file), str(noisy), str(second), "-o", str(out_dir)]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["noisy_enhanced.wav", "second_enhanced.flac"]
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


@pytest.mark.parametrize("how", ["empty_suffix", "output_is_input", "folder_with_empty_suffix", "symlink",
                                 "hardlink"])
def test_denoise_never_overwrites_its_input(how, model_file, noisy, tmp_path, capsys):
    before = noisy.read_bytes()
    if how == "empty_suffix":
        argv = ["--suffix", "", str(noisy)]
    elif how == "output_is_input":
        argv = ["-o", str(noisy), str(noisy)]
    elif how == "folder_with_empty_suffix":
        argv = ["-o", str(tmp_path), "--suffix", "", str(noisy)]
    else:
        link = tmp_path / "link.wav"
        (os.symlink if how == "symlink" else os.link)(noisy, link)
        argv = ["-o", str(link), str(noisy)]
    assert main(["denoise", "-m", str(model_file), "--overwrite", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pse-nmf: error:") and "never overwrites" in err and "Traceback" not in err
    assert noisy.read_bytes() == before
    assert _temp_files(tmp_path) == []


def test_denoise_refuses_existing_output_unless_overwrite(model_file, noisy, tmp_path, capsys):
    out = tmp_path / "noisy_enhanced.wav"
    out.write_bytes(b"previous result")
    assert main(["denoise", "-m", str(model_file), str(noisy)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"previous result"
    assert main(["denoise", "-m", str(model_file), "--overwrite", str(noisy)]) == 0
    assert sf.info(str(out)).frames == sf.info(str(noisy)).frames


def test_corrupt_second_input_leaves_no_partial_file(model_file, noisy, tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(64)))
    out_dir = tmp_path / "out"
    assert main(["denoise", "-m", str(model_file), str(noisy), str(bad), "-o", str(out_dir)]) == 1
    err = capsys.readouterr().err
    assert "bad.wav" in err and "Traceback" not in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["noisy_enhanced.wav"]  # no temp file, no bad output


def test_failed_write_leaves_no_partial_file(model_file, noisy, tmp_path, monkeypatch, capsys):
    def full_disk(path, data, samplerate, subtype=None):
        with open(path, "wb") as fh:
            fh.write(b"RIFF\x00\x00")  # a partial file, then the failure
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sf, "write", full_disk)
    out_dir = tmp_path / "out"
    assert main(["denoise", "-m", str(model_file), str(noisy), "-o", str(out_dir)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert list(out_dir.iterdir()) == []


def test_stereo_needs_downmix(model_file, noisy, tmp_path, capsys):
    y, _ = sf.read(noisy, dtype="float32")
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([y, 0.5 * y], axis=1), SR)
    assert main(["denoise", "-m", str(model_file), str(stereo)]) == 1
    assert "--downmix" in capsys.readouterr().err
    assert not (tmp_path / "stereo_enhanced.wav").exists()
    assert main(["denoise", "-m", str(model_file), "--downmix", str(stereo)]) == 0
    info = sf.info(str(tmp_path / "stereo_enhanced.wav"))
    assert (info.channels, info.frames) == (1, y.size)


@pytest.mark.parametrize("model, message", [
    ("missing.npz", "no model file"),
    ("noisy.wav", "model file"),
    ("plain.npz", "model file"),
])
def test_bad_model_file(model, message, noisy, tmp_path, capsys):
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    assert main(["denoise", "-m", str(tmp_path / model), str(noisy)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pse-nmf: error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "noisy_enhanced.wav").exists()


def test_denoise_output_without_extension_is_a_folder(model_file, noisy, tmp_path, capsys):
    assert main(["denoise", "-m", str(model_file), str(noisy), "-o", str(tmp_path / "results")]) == 0
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["noisy_enhanced.wav"]


def test_denoise_folder_input_is_an_error(model_file, tmp_path, capsys):
    assert main(["denoise", "-m", str(model_file), str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err


def test_denoise_suffix_with_separator_is_an_error(model_file, noisy, tmp_path, capsys):
    assert main(["denoise", "-m", str(model_file), "--suffix", "/../x", str(noisy)]) == 1
    assert "path separator" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noisy.wav"]


# -- evaluate --------------------------------------------------------------------------------------
def test_evaluate_resamples_other_rates(audio, tmp_path, capsys):
    clean, _ = read_audio(audio / "clean.wav")
    ref22 = tmp_path / "clean22.wav"
    sf.write(ref22, resample(clean, SR, 22050), 22050, subtype="FLOAT")
    assert main(["evaluate", str(audio / "clean.wav"), "--reference", str(ref22), "--metrics", "si_sdr",
                 "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["si_sdr"] > 25  # the same speech: only resampling and 16-bit rounding differ


def test_evaluate_several_pairs_table(audio, capsys):
    clean, noisy = str(audio / "clean.wav"), str(audio / "noisy.wav")
    assert main(["evaluate", noisy, clean, "--reference", clean, clean, "--metrics", "si_sdr"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 4 and rows[-1].startswith("mean of 2")
    assert len({len(r) for r in rows}) == 1  # aligned columns
    values = [float(r.split()[-1]) for r in rows[1:]]
    assert values[2] == pytest.approx((values[0] + values[1]) / 2, abs=1e-3)


def test_evaluate_length_mismatch(audio, tmp_path, capsys):
    clean, _ = read_audio(audio / "clean.wav")
    short = tmp_path / "short.wav"
    sf.write(short, clean[:-800], SR)
    assert main(["evaluate", str(short), "--reference", str(audio / "clean.wav")]) == 1
    err = capsys.readouterr().err
    assert "differ in length" in err and "Traceback" not in err


def test_evaluate_count_mismatch(audio, capsys):
    clean = str(audio / "clean.wav")
    assert main(["evaluate", clean, clean, "--reference", clean]) == 2
    assert "one reference per enhanced file" in capsys.readouterr().err


# -- demo ------------------------------------------------------------------------------------------
def test_run_demo_small_model(tmp_path, capsys):
    out = tmp_path / "demo"
    small = dict(n_components=8, max_iter=5, test_max_iter=10, tol=0)
    result = run_demo(out, model_params=small, verbose=True)
    names = {"noisy.wav", "enhanced.wav", "clean.wav", "spectrograms.png", "model.npz"}
    assert {p.name for p in out.iterdir()} == names
    assert {p.name for p in result["paths"].values()} == names
    frames = {sf.info(str(out / n)).frames for n in ("noisy.wav", "enhanced.wav", "clean.wav")}
    assert len(frames) == 1
    assert (out / "spectrograms.png").read_bytes()[:8] == PNG_MAGIC
    assert load_model(out / "model.npz").n_components == 8
    m = result["metrics"]
    assert m["si_sdr_i"] == pytest.approx(m["si_sdr"] - m["si_sdr_mixture"])
    assert result["real_time_factor"] == pytest.approx(result["denoise_seconds"] / result["test_seconds"])
    report = capsys.readouterr().out
    assert "SI-SDR" in report and "PESQ" in report and "eSTOI" in report and "real-time factor" in report

    before = (out / "model.npz").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        run_demo(out, verbose=False)
    assert (out / "model.npz").read_bytes() == before
    small["n_components"] = 4
    run_demo(out, model_params=small, overwrite=True, verbose=False)
    assert load_model(out / "model.npz").n_components == 4
    assert _temp_files(out) == []
    with pytest.raises(ValueError, match="unknown speaker"):
        run_demo(tmp_path / "other", speaker="nobody", verbose=False)


@pytest.mark.slow
def test_demo_command(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out-dir", str(out), "--snr", "5", "--seed", "1"]) == 0
    assert "5 dB SNR" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"noisy.wav", "enhanced.wav", "clean.wav", "spectrograms.png",
                                               "model.npz"}
    assert main(["demo", "--out-dir", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err


# -- issue 19: outputs under concurrency and signals, checked before the work -----------------------
def test_denoise_stream_does_not_replace_an_output_that_appeared_meanwhile(model_file, noisy, tmp_path,
                                                                           monkeypatch, capsys):
    # Two runs writing one output: the other run finishes while this one streams. Reproduced
    # deterministically by creating the output from inside the stream's first block.
    from pse_nmf import OnlineNMF

    out = tmp_path / "o.wav"
    run = OnlineNMF._run

    def other_run_finishes(self, st, x, final=False):
        if not out.exists():
            out.write_bytes(b"the other run's result")
        return run(self, st, x, final=final)

    monkeypatch.setattr(OnlineNMF, "_run", other_run_finishes)
    assert main(["denoise", "--stream", "-m", str(model_file), str(noisy), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "appeared while" in err and "o.wav" in err
    assert out.read_bytes() == b"the other run's result"
    assert _temp_files(tmp_path) == []


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_denoise_stream_killed_leaves_no_temp_file(signame, model_file, noisy, tmp_path):
    import signal
    import time

    y, sr = sf.read(noisy, dtype="float32")
    long_input = tmp_path / "long.wav"
    sf.write(long_input, np.tile(y, 40), sr)  # a few minutes: still streaming when the signal comes
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "pse_nmf", "denoise", "--stream", "-m", str(model_file),
                             str(long_input), "-o", str(out_dir / "o.wav")], stderr=subprocess.PIPE, text=True,
                            # the signal at its default action, as from a terminal (nohup would pass SIGHUP
                            # on as ignored, and pse-nmf rightly leaves an ignored signal alone)
                            preexec_fn=lambda: signal.signal(getattr(signal, signame), signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        def writing():  # the temporary output, not _atomic_target's short-lived writability probe
            return [name for name in _temp_files(out_dir) if name.endswith(".wav")]

        while not writing() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writing(), "the stream never started writing"
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -getattr(signal, signame)  # killed by the signal, as without pse_nmf
    assert "Traceback" not in err
    assert list(out_dir.iterdir()) == []


def test_denoise_checks_the_output_folder_is_writable_before_the_work(model_file, noisy, tmp_path,
                                                                      monkeypatch, capsys):
    import tempfile

    def read_only(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", os.path.join(str(dir), ".o.abc123.wav"))

    calls = []
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(SemiSupervisedNMF, "denoise", lambda self, *a, **k: calls.append(1))
    assert main(["denoise", "-m", str(model_file), str(noisy), "-o", str(tmp_path / "o.wav")]) == 1
    err = capsys.readouterr().err
    assert "is not writable" in err and str(tmp_path) in err and ".o.abc123" not in err
    assert calls == []


def test_fit_to_an_existing_folder_fails_before_fitting(audio, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(SemiSupervisedNMF, "fit", lambda self, *a, **k: calls.append(1))
    (tmp_path / "models").mkdir()
    assert main(["fit", "-o", str(tmp_path / "models"), str(audio / "train")]) == 1
    err = capsys.readouterr().err
    assert "is a folder" in err and "models" in err and calls == []


def test_denoise_refuses_an_all_zero_model_instead_of_writing_silence(model_file, noisy, tmp_path, capsys):
    with np.load(model_file, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["attr:components_"] = np.zeros_like(arrays["attr:components_"])
    zeroed = tmp_path / "zeros.npz"
    np.savez(zeroed, **arrays)
    assert main(["denoise", "-m", str(zeroed), str(noisy)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pse-nmf: error:") and "zeros.npz" in err and "all zeros" in err
    assert not (tmp_path / "noisy_enhanced.wav").exists()


# -- issue 19: one clear line naming the file or the parameter -------------------------------------
def test_denoise_stream_truncated_flac_is_one_clear_line(model_file, noisy, tmp_path, capsys):
    y, sr = sf.read(noisy, dtype="float32")
    flac = tmp_path / "cut.flac"
    sf.write(flac, np.tile(y, 4), sr, format="FLAC")
    data = flac.read_bytes()
    flac.write_bytes(data[: len(data) // 2])  # a download that stopped half way
    out = tmp_path / "o.wav"
    assert main(["denoise", "--stream", "-m", str(model_file), str(flac), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pse-nmf: error:") and "cut.flac" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and _temp_files(tmp_path) == []


def test_denoise_too_short_input_names_the_file(model_file, noisy, tmp_path, capsys):
    short = tmp_path / "short.wav"
    sf.write(short, np.full(100, 0.1, dtype=np.float32), SR)
    assert main(["denoise", "-m", str(model_file), str(short)]) == 1
    err = capsys.readouterr().err
    assert "short.wav" in err and "100 samples" in err


@pytest.mark.parametrize("n, metric, message", [
    (1, "estoi", "too short for STOI"),  # was "axis 1 is out of bounds"
    (1, "si_sdr", "constant"),
    (2000, "pesq", "too short for PESQ"),  # was a raw BufferTooShortError
])
def test_evaluate_too_short_files_name_the_files(n, metric, message, audio, tmp_path, capsys):
    clean, _ = read_audio(audio / "clean.wav")
    a, b = tmp_path / "enh.wav", tmp_path / "ref.wav"
    sf.write(a, clean[1000:1000 + n], SR)
    sf.write(b, clean[1000:1000 + n], SR)
    assert main(["evaluate", str(a), "--reference", str(b), "--metrics", metric]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pse-nmf: error:") and "enh.wav" in err and message in err
    assert len(err.strip().splitlines()) == 1


def test_evaluate_silent_enhanced_file_scores_minus_infinity(audio, tmp_path, capsys):
    clean, _ = read_audio(audio / "clean.wav")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros_like(clean), SR)
    assert main(["evaluate", str(silent), "--reference", str(audio / "clean.wav"), "--metrics", "si_sdr"]) == 0
    assert "-inf" in capsys.readouterr().out


def test_fit_bad_setting_value_names_the_parameter_before_reading(audio, tmp_path, capsys):
    assert main(["fit", "-o", str(tmp_path / "m.npz"), "--set", "sr=foo", str(audio / "train")]) == 2
    err = capsys.readouterr().err
    assert "'sr'" in err and "foo" in err and "invalid literal" not in err


def test_neural_model_without_torch_is_one_clear_line(model_file, noisy, tmp_path, monkeypatch, capsys):
    from pse_nmf import _persistence

    with np.load(model_file, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta["estimator"] = "GRUEnhancer"
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    gru = tmp_path / "gru.npz"
    np.savez(gru, **arrays)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    for name in [m for m in sys.modules if m.startswith("pse_nmf.neural")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(_persistence._REGISTRY, "GRUEnhancer", raising=False)
    assert main(["denoise", "-m", str(gru), str(noisy)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pse-nmf: error:") and "gru.npz" in err and "pse_nmf[neural]" in err
    assert len(err.strip().splitlines()) == 1


def test_fit_on_too_little_speech_fails_instead_of_saving_a_harmful_model(audio, tmp_path, capsys):
    clean, _ = read_audio(audio / "clean.wav")
    short = tmp_path / "short.wav"
    sf.write(short, clean[: SR // 2], SR)
    out = tmp_path / "m.npz"
    assert main(["fit", "-o", str(out), str(short)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pse-nmf: error:") and "0.5 s" in err and "min_seconds=0" in err
    assert not out.exists()
    assert main(["fit", "-o", str(out), "--max-iter", "5", "--set", "min_seconds=0", str(short)]) == 0
    assert "only 0.5 s" in capsys.readouterr().err  # the opt-out still warns


# -- denoise --ensemble (issue 15, item 5) ------------------------------------------------------------
def test_denoise_ensemble_averages_the_models(audio, model_file, noisy, tmp_path, capsys):
    second = tmp_path / "second.npz"
    assert main(["fit", "-o", str(second), "--n-components", "4", "--max-iter", "10", "--seed", "1",
                 "--set", "n_noise_components=2", "--set", "test_max_iter=20", str(audio / "train")]) == 0
    out = tmp_path / "ens.wav"
    assert main(["denoise", "-m", str(model_file), "-m", str(second), "--ensemble", str(noisy), "-o", str(out)]) == 0
    y, sr = read_audio(noisy, sr=None)
    members = [load_model(model_file), load_model(second)]
    expected = pse_nmf.EnsembleEnhancer([("a", members[0]), ("b", members[1])]).fit().denoise(y, sr=sr)
    got, _ = read_audio(out, sr=None)
    np.testing.assert_allclose(got, expected, atol=2 / 32768)  # the output keeps the input's 16-bit PCM
    assert not np.allclose(got, members[0].denoise(y, sr=sr), atol=1e-3)


def test_denoise_several_models_need_ensemble(model_file, noisy, capsys):
    assert main(["denoise", "-m", str(model_file), "-m", str(model_file), str(noisy)]) == 1
    assert "pass --ensemble" in capsys.readouterr().err
    assert main(["denoise", "-m", str(model_file), "--ensemble", str(noisy)]) == 1
    assert "two or more models" in capsys.readouterr().err
