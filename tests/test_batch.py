"""denoise_files / fit_many / ``pse-nmf denoise --jobs`` and ``fit-many``: parallel equals serial.

The Dask tests start a real ``dask.distributed.LocalCluster`` on the loopback
interface (one worker process-less, two threads) and send the work to it
through joblib's Dask backend, as ``--scheduler tcp://...`` does.
"""

import numpy as np
import pytest
import soundfile as sf

from pse_nmf import SemiSupervisedNMF, denoise_files, fit_many, load
from pse_nmf._cli import main
from pse_nmf.audio import write_audio
from pse_nmf.datasets import mix_at_snr

SR = 16000


def _small_model():
    return SemiSupervisedNMF(n_components=8, max_iter=15, n_noise_components=4, test_max_iter=20, random_state=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, example):
    """A fitted model (saved) and 5 short noisy files of one example speaker."""
    root = tmp_path_factory.mktemp("batch")
    speaker = sorted(example.speech)[0]
    utterances = example.speech[speaker]
    model = _small_model().fit(utterances[:3])
    model.save(root / "model.npz")
    noisy = root / "noisy"
    noisy.mkdir()
    noise = example.noise["running_tap"][0]
    files = []
    for i in range(5):
        speech = utterances[3 + i % 3][: 2 * SR]
        x, _ = mix_at_snr(speech, noise, 0.0, random_state=i)
        files.append(write_audio(noisy / f"n{i}.wav", 0.5 * x, SR))
    return {"root": root, "model": model, "model_file": root / "model.npz", "files": files}


def _samples(path):
    return sf.read(str(path), dtype="int16")[0]


@pytest.fixture(scope="module")
def serial(corpus, tmp_path_factory):
    """The reference: a serial run (n_jobs=1)."""
    out = tmp_path_factory.mktemp("serial")
    records = denoise_files(corpus["model"], corpus["files"], out, n_jobs=1, progress=False)
    assert all(r["ok"] for r in records)
    return {r["input"]: _samples(r["output"]) for r in records}


def _same_as_serial(records, serial):
    assert [r["input"] for r in records] == list(serial)
    for r in records:
        assert r["ok"], r["error"]
        np.testing.assert_array_equal(_samples(r["output"]), serial[r["input"]])


def test_denoise_files_serial_matches_denoise(corpus, serial):
    model = corpus["model"]
    for path, written in serial.items():
        x, sr = sf.read(path, dtype="float32")
        expected = np.clip(model.denoise(x, sr=sr), -1, 1)
        np.testing.assert_allclose(written / 32768.0, expected, atol=1.5 / 32768)


def test_denoise_files_two_processes_identical(corpus, serial, tmp_path):
    records = denoise_files(corpus["model"], corpus["files"], tmp_path, n_jobs=2, progress=False)
    _same_as_serial(records, serial)


def test_one_bad_file_does_not_stop_the_others(corpus, serial, tmp_path):
    bad = tmp_path / "in" / "bad.wav"
    bad.parent.mkdir()
    bad.write_bytes(b"RIFF not really a wav file")
    short = write_audio(tmp_path / "in" / "short.wav", np.zeros(100, np.float32) + 0.1, SR)
    inputs = [corpus["files"][0], bad, short, corpus["files"][1]]
    records = denoise_files(corpus["model"], inputs, tmp_path / "out", n_jobs=2, progress=False)
    assert [r["ok"] for r in records] == [True, False, False, True]
    assert "bad.wav" in records[1]["error"] and "short.wav" in records[2]["error"]
    assert records[1]["output"] is None
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["n0_enhanced.wav", "n1_enhanced.wav"]  # no partial or temporary file
    for r in (records[0], records[3]):
        np.testing.assert_array_equal(_samples(r["output"]), serial[r["input"]])


def test_existing_outputs_refused_before_any_work(corpus, tmp_path):
    (tmp_path / "n2_enhanced.wav").write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="n2_enhanced.wav.*overwrite"):
        denoise_files(corpus["model"], corpus["files"], tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n2_enhanced.wav"]
    assert (tmp_path / "n2_enhanced.wav").read_bytes() == b"keep me"


def test_denoise_files_bad_arguments(corpus, tmp_path):
    with pytest.raises(TypeError, match="denoise"):
        denoise_files(object(), corpus["files"], tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        denoise_files(corpus["model"], [tmp_path / "missing.wav"], tmp_path)
    with pytest.raises(ValueError, match="suffix"):
        denoise_files(corpus["model"], corpus["files"], tmp_path, suffix="a/b")


def test_cli_denoise_jobs_reports_failures_and_goes_on(corpus, serial, tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF broken")
    out = tmp_path / "out"
    rc = main(["denoise", "-m", str(corpus["model_file"]), "-o", str(out), "--jobs", "2", "--quiet",
               str(corpus["files"][0]), str(bad), str(corpus["files"][2])])
    captured = capsys.readouterr()
    assert rc == 1
    assert "bad.wav" in captured.err and "1 of 3 file(s) failed" in captured.err
    assert captured.out == ""  # --quiet
    for inp in (corpus["files"][0], corpus["files"][2]):
        np.testing.assert_array_equal(_samples(out / f"{inp.stem}_enhanced.wav"), serial[str(inp)])


def test_cli_denoise_rejects_bad_jobs(corpus, capsys):
    assert main(["denoise", "-m", str(corpus["model_file"]), "--jobs", "0", str(corpus["files"][0])]) == 2
    assert "--jobs" in capsys.readouterr().err


# -- fit many --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def speakers(tmp_path_factory, example):
    """Two speaker folders of 4 s each, and one with 1 s (too little: its fit fails)."""
    root = tmp_path_factory.mktemp("speakers")
    for name, seconds in (("alice", 4), ("bob", 4), ("carol", 1)):
        speaker = sorted(example.speech)[{"alice": 0, "bob": 1, "carol": 2}[name]]
        (root / name).mkdir()
        write_audio(root / name / "u.wav", example.speech[speaker][0][: seconds * SR], SR)
    return root


def _arrays(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_fit_many_parallel_equals_serial_fits(speakers, tmp_path):
    records = fit_many(_small_model(), speakers, tmp_path, n_jobs=2, progress=False)
    assert [r["speaker"] for r in records] == ["alice", "bob", "carol"]
    assert [r["ok"] for r in records] == [True, True, False]
    assert "carol" in records[2]["error"] and "seconds" in records[2]["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.npz", "bob.npz"]
    for name in ("alice", "bob"):
        alone = _small_model().fit(speakers / name)
        np.testing.assert_array_equal(load(tmp_path / f"{name}.npz").components_, alone.components_)


def test_cli_fit_many(speakers, tmp_path, capsys):
    out = tmp_path / "models"
    rc = main(["fit-many", str(speakers), "-o", str(out), "--n-components", "8", "--max-iter", "15",
               "--set", "n_noise_components=4", "--set", "test_max_iter=20", "--jobs", "1"])
    captured = capsys.readouterr()
    assert rc == 1 and "carol" in captured.err and "1 of 3 speaker(s) failed" in captured.err
    assert "alice ->" in captured.out and "bob ->" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["alice.npz", "bob.npz"]
    # existing model files are refused before any work
    assert main(["fit-many", str(speakers), "-o", str(out), "--jobs", "1"]) == 1
    assert "--overwrite" in capsys.readouterr().err


# -- Dask ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster


def test_dask_backend_identical(corpus, serial, cluster, tmp_path):
    import joblib
    from dask.distributed import Client

    with Client(cluster), joblib.parallel_config(backend="dask"):
        records = denoise_files(corpus["model"], corpus["files"], tmp_path, progress=False)
    _same_as_serial(records, serial)


def test_cli_scheduler_address(corpus, serial, cluster, tmp_path, capsys):
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    out = tmp_path / "out"
    rc = main(["denoise", "-m", str(corpus["model_file"]), "-o", str(out), "--scheduler",
               cluster.scheduler_address, "--jobs", "-1", *map(str, corpus["files"])])
    assert rc == 0, capsys.readouterr().err
    for inp in corpus["files"]:
        np.testing.assert_array_equal(_samples(out / f"{inp.stem}_enhanced.wav"), serial[str(inp)])


def test_dask_fit_many_identical(speakers, cluster, tmp_path):
    import joblib
    from dask.distributed import Client

    with Client(cluster), joblib.parallel_config(backend="dask"):
        records = fit_many(_small_model(), {"alice": speakers / "alice", "bob": speakers / "bob"}, tmp_path,
                           progress=False)
    assert all(r["ok"] for r in records)
    serial_dir = tmp_path / "serial"
    fit_many(_small_model(), {"alice": speakers / "alice", "bob": speakers / "bob"}, serial_dir, progress=False)
    for name in ("alice", "bob"):
        a, b = _arrays(tmp_path / f"{name}.npz"), _arrays(serial_dir / f"{name}.npz")
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


class _ThreadProbe:
    """A denoiser that reports, as a warning, how many BLAS threads it runs with."""

    sr = SR

    def denoise(self, x, *, sr=None, downmix=False):
        import warnings

        from threadpoolctl import threadpool_info

        blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        warnings.warn(f"blas threads: {max(blas)}")
        return x


def test_each_file_runs_with_one_blas_thread_whatever_n_jobs(corpus, tmp_path):
    """A product's rounding depends on how many threads share it: the serial run (which would get every core)
    and loky's workers (which get cores // n_jobs) gave different samples from the command line before."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        records = denoise_files(_ThreadProbe(), corpus["files"][:2], tmp_path, n_jobs=1, progress=False)
    assert all(r["ok"] for r in records)
    assert all(r["warnings"] == ["blas threads: 1"] for r in records), [r["warnings"] for r in records]
