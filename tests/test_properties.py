"""Property-based tests (hypothesis) over the public entry points (issue 19, deliverable 6).

Every case must end in a correct result or a documented exception raised by
pse_nmf itself, never an exception from a dependency (numpy, librosa,
soundfile, pesq, pystoi): :func:`_check_documented` walks the traceback to
the frame that raised and requires it to be pse_nmf's (scikit-learn's
parameter validation is the one documented exception raised elsewhere).

Examples are derandomized (a fixed seed, no global randomness) and at least
200 per entry point; the whole file runs in about a minute.
"""

import io
import json
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pse_nmf import ModelFileError  # noqa: E402
from pse_nmf import load as load_model  # noqa: E402
from pse_nmf.audio import check_waveform, read_audio, write_audio  # noqa: E402
from pse_nmf.metrics import evaluate, si_sdr  # noqa: E402

PSE_NMF_DIR = str(Path(__import__("pse_nmf").__file__).parent)
DOCUMENTED = (ValueError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError, PermissionError)
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


def _check_documented(exc):
    """``exc`` is a documented exception that pse_nmf raised (not one escaping from a dependency)."""
    from sklearn.utils._param_validation import InvalidParameterError

    assert isinstance(exc, DOCUMENTED), f"undocumented {type(exc).__name__}: {exc}"
    if isinstance(exc, InvalidParameterError):
        return
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename
    assert where.startswith(PSE_NMF_DIR), f"{type(exc).__name__} from a dependency ({where}): {exc}"


def test_the_check_itself_can_fail():
    """_check_documented refuses a ValueError that escaped from numpy (AxisError, as evaluate gave)."""
    try:
        np.zeros(3).sum(axis=1)
    except Exception as exc:
        with pytest.raises(AssertionError, match="from a dependency"):
            _check_documented(exc)
    with pytest.raises(AssertionError, match="undocumented RuntimeError"):
        _check_documented(RuntimeError("x"))


# -- waveforms -------------------------------------------------------------------------------------
DTYPES = [np.float32, np.float64, np.int16, np.int32, np.uint8, np.complex64, np.bool_]


@st.composite
def waveforms(draw, max_len=4000):
    """(array, n_samples): random length, dtype, channels and layout, with NaN/inf/DC/silence."""
    n = draw(st.integers(0, max_len))
    dtype = draw(st.sampled_from(DTYPES))
    channels = draw(st.sampled_from([0, 1, 2, 3]))  # 0: a 1-D array
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, max(channels, 1))) * draw(st.sampled_from([0.0, 1e-6, 0.1, 1.0, 40.0]))
    x += draw(st.sampled_from([0.0, 0.0, 0.3, -2.0]))  # DC
    special = draw(st.sampled_from([None, None, None, np.nan, np.inf, -np.inf]))
    if special is not None and n:
        x[rng.integers(n), 0] = special
    with np.errstate(over="ignore", invalid="ignore"):  # the huge and non-finite cases are wanted
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            x = np.clip(np.nan_to_num(x) * info.max / 50.0 + (0 if info.min < 0 else info.max / 2), info.min,
                        info.max)
        x = x.astype(dtype)
    if channels == 0:
        x = x[:, 0]
    elif draw(st.booleans()):
        x = x.T  # librosa's (n_channels, n_samples)
    return x, n


@SETTINGS
@given(case=waveforms(), downmix=st.booleans())
def test_check_waveform_property(case, downmix):
    x, n = case
    try:
        y = check_waveform(x, downmix=downmix)
    except Exception as exc:
        _check_documented(exc)
        return
    assert y.ndim == 1 and y.dtype == np.float32 and np.all(np.isfinite(y))
    # 2-D: the shorter axis is the channels (check_waveform's documented rule), so the longer is time
    assert y.size == (n if x.ndim == 1 else max(x.shape))


@pytest.fixture(scope="module")
def model(small_semi):
    return small_semi


@SETTINGS
@given(case=waveforms(max_len=12000), sr=st.sampled_from([None, 8000, 16000, 22050, 44100]), downmix=st.booleans())
def test_denoise_property(model, case, sr, downmix):
    x, n = case
    try:
        y = model.denoise(x, sr=sr, downmix=downmix)
    except Exception as exc:
        _check_documented(exc)
        return
    assert y.shape == (n,) and y.dtype == np.float32 and np.all(np.isfinite(y))
    arr = np.asarray(x)
    if arr.dtype.kind == "f" and not np.any(arr):
        np.testing.assert_array_equal(y, 0.0)


# -- metrics ---------------------------------------------------------------------------------------
@st.composite
def signal_pairs(draw, max_len=6000):
    n = draw(st.integers(0, max_len))
    m = n if draw(st.integers(0, 9)) else draw(st.integers(0, max_len))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    ref = rng.standard_normal(n) * draw(st.sampled_from([0.0, 1.0])) + draw(st.sampled_from([0.0, 0.5]))
    gain = draw(st.sampled_from([0.0, 0.1, 1.0, -3.0]))
    est = gain * np.resize(ref, m) + draw(st.sampled_from([0.0, 0.01, 1.0])) * rng.standard_normal(m)
    return est, ref


@SETTINGS
@given(pair=signal_pairs())
def test_si_sdr_property(pair):
    est, ref = pair
    try:
        value = si_sdr(est, ref)
    except Exception as exc:
        _check_documented(exc)
        return
    assert isinstance(value, float) and not np.isnan(value)
    if not np.any(est - est.mean()):
        assert value == -np.inf  # a silent estimate is never scored like a real one


@SETTINGS
@given(pair=signal_pairs(max_len=9000),
       metrics=st.lists(st.sampled_from(["si_sdr", "sdr", "pesq", "stoi", "estoi", "loudness"]), min_size=1,
                        max_size=3),
       as_string=st.booleans())
def test_evaluate_property(pair, metrics, as_string):
    est, ref = pair
    try:
        record = evaluate(est, ref, sr=16000, metrics=",".join(metrics) if as_string else metrics)
    except Exception as exc:
        _check_documented(exc)
        return
    assert set(record) == set(metrics)
    for name, value in record.items():
        assert isinstance(value, float)
        assert name == "pesq" or not np.isnan(value)  # PESQ's "no utterance" NaN is documented


# -- files -----------------------------------------------------------------------------------------
@SETTINGS
@given(n=st.integers(0, 3000), ext=st.sampled_from([".wav", ".flac", ".ogg", ".xyz", "", ".WAV", "/"]),
       sr=st.sampled_from([16000, 8000, 0, -1, 1.5, True, "16000"]),
       subtype=st.sampled_from([None, "PCM_16", "FLOAT", "PCM_99", "VORBIS"]), exists=st.booleans())
def test_write_audio_property(tmp_path_factory, n, ext, sr, subtype, exists):
    folder = tmp_path_factory.mktemp("w")
    path = folder / f"o{ext}" if ext != "/" else folder
    if exists and ext != "/":
        path.write_bytes(b"keep")
    x = np.random.default_rng(n).uniform(-0.9, 0.9, n).astype(np.float32)
    try:
        out = write_audio(path, x, sr, subtype=subtype)
    except Exception as exc:
        _check_documented(exc)
        if exists and ext != "/":
            assert path.read_bytes() == b"keep"
    else:
        y, got_sr = read_audio(out, sr=None)
        assert got_sr == sr and y.size == n
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.fixture(scope="module")
def model_bytes(small_semi, tmp_path_factory):
    return small_semi.save(tmp_path_factory.mktemp("m") / "m.npz").read_bytes()


def _rewrite(data, change):
    """Apply ``change(meta, arrays)`` to a model file's contents; return the new file's bytes."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    change(meta, arrays)
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return buf.getvalue()


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, width=32),
                        st.text(max_size=5), st.lists(st.integers(0, 3), max_size=2))


@st.composite
def corrupted_models(draw, data):
    kind = draw(st.sampled_from(["truncate", "flip", "meta", "param", "array", "attribute"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            out[draw(st.integers(0, len(out) - 1))] ^= draw(st.integers(1, 255))
        return bytes(out)
    key = draw(st.sampled_from(["format", "format_version", "estimator", "params", "array_params", "attributes",
                                "arrays", "audio"]))
    value = draw(JSON_VALUES)
    pname = draw(st.sampled_from(["n_fft", "sr", "hop_length", "n_components", "beta", "known", "mask_power"]))
    aname = draw(st.sampled_from(["n_iter_", "n_features_in_", "reconstruction_err_"]))
    shape = draw(st.sampled_from([(16, 513), (0, 513), (16, 512), (16,), (2, 16, 513)]))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int64, np.complex64, np.bool_]))
    fill = draw(st.sampled_from([0.0, 1.0, -1.0, np.nan, np.inf, None]))
    seed = draw(st.integers(0, 2**31 - 1))

    def change(meta, arrays):
        if kind == "meta":
            meta[key] = value
        elif kind == "param":
            meta["params"][pname] = value
        elif kind == "attribute":
            meta["attributes"][aname] = value
        else:
            arr = np.random.default_rng(seed).random(shape) if fill is None else np.full(shape, fill)
            with np.errstate(invalid="ignore"):
                arrays["attr:components_"] = arr.astype(dtype)

    return _rewrite(data, change)


@SETTINGS
@given(data=st.data())
def test_load_model_property(model_bytes, tmp_path_factory, data):
    path = tmp_path_factory.mktemp("c") / "c.npz"
    path.write_bytes(data.draw(corrupted_models(model_bytes)))
    try:
        est = load_model(path)
        # a file that loads must be usable: short noisy audio in, a finite waveform of its length out
        x = np.random.default_rng(0).standard_normal(2048).astype(np.float32) * 0.1
        y = est.denoise(x)
    except ModelFileError as exc:
        assert str(path) in str(exc)  # the message names the file
    except Exception as exc:
        _check_documented(exc)
    else:
        assert y.shape == x.shape and np.all(np.isfinite(y))


# -- the command line ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_files(example, tmp_path_factory, small_semi):
    import soundfile as sf

    root = tmp_path_factory.mktemp("cli")
    speech = example.speech[sorted(example.speech)[0]]
    sf.write(root / "train.wav", speech[0], 16000)
    sf.write(root / "noisy.wav", speech[1][:16000] + 0.05 * np.resize(example.noise["running_tap"][0], 16000),
             16000)
    sf.write(root / "clean.wav", speech[1][:16000], 16000)
    sf.write(root / "tiny.wav", speech[1][:100], 16000)
    (root / "bad.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(32)))
    (root / "folder").mkdir()
    small_semi.save(root / "model.npz")
    return root, (root / "model.npz").read_bytes()


ARGS = {
    "fit": [["--max-iter", "2"], ["--max-iter", "0"], ["--n-components", "3"], ["--n-components", "x"],
            ["--set", "sr=foo"], ["--set", "n_noise_components=2"], ["--set", "nope=1"], ["--set", "min_seconds=0"],
            ["--model", "online"], ["--model", "exemplar"], ["--model", "usm"], ["--known", "noise"],
            ["--sparsity", "-1"], ["--seed", "3"], ["--downmix"], ["--overwrite"], ["--sr", "8000"]],
    "denoise": [["--stream"], ["--block-size", "500"], ["--block-size", "0"], ["--suffix", "_x"],
                ["--suffix", "a/b"], ["--overwrite"], ["--downmix"]],
    "evaluate": [["--metrics", "si_sdr"], ["--metrics", "pesq,estoi"], ["--metrics", "x"], ["--json"],
                 ["--downmix"]],
}
FILES = ["train.wav", "noisy.wav", "clean.wav", "tiny.wav", "bad.wav", "folder", "missing.wav", "model.npz"]


@st.composite
def command_lines(draw, root):
    command = draw(st.sampled_from(["fit", "denoise", "evaluate", "demo-less"]))
    if command == "demo-less":
        return draw(st.sampled_from([[], ["--version"], ["frobnicate"], ["fit"], ["denoise", "-m"]]))
    files = [str(root / f) for f in draw(st.lists(st.sampled_from(FILES), min_size=0, max_size=2))]
    argv = [command]
    options = draw(st.lists(st.sampled_from(ARGS[command]), max_size=3, unique_by=tuple))
    for option in options:
        argv += option
    if command == "fit" and not any(o[0] == "--max-iter" for o in options):
        argv += ["--max-iter", "3"]  # keep each example fast
    out = draw(st.sampled_from(["out.npz", "out.wav", "out", "folder", "model.npz", "noisy.wav", None]))
    if command == "fit":
        argv += (["-o", str(root / out)] if out else []) + files
    elif command == "denoise":
        model = draw(st.sampled_from(["model.npz", "noisy.wav", "missing.npz"]))
        argv += ["-m", str(root / model)] + (["-o", str(root / "run" / out)] if out else []) + files
    else:
        refs = [str(root / f) for f in draw(st.lists(st.sampled_from(FILES), min_size=0, max_size=2))]
        argv += files + (["--reference", *refs] if refs else [])
    return argv


@SETTINGS
@given(data=st.data())
def test_cli_property(cli_files, data, capsys):
    import shutil

    from pse_nmf._cli import main

    cli_files, model_bytes = cli_files
    (cli_files / "model.npz").write_bytes(model_bytes)  # a run with --overwrite may have replaced it
    argv = data.draw(command_lines(cli_files))
    shutil.rmtree(cli_files / "run", ignore_errors=True)
    for name in ("out.npz", "out.wav", "out"):
        target = cli_files / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    before = {f: (cli_files / f).read_bytes() for f in ("train.wav", "noisy.wav", "model.npz")}
    rc = main(argv)  # an exception escaping main fails the test: that is a traceback for the user
    err = capsys.readouterr().err
    assert rc in (0, 1, 2)
    if rc == 1:
        assert err.startswith("pse-nmf: error:"), err
    assert "Traceback" not in err
    assert {f: (cli_files / f).read_bytes() for f in before} == before or "--overwrite" in argv
    assert not [p for p in cli_files.rglob(".*") if p.is_file()]  # no temporary file left
