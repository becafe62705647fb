"""Saving and loading models: round trips, and refusal of every other kind of file.

Tampered files are made by reading a saved model's arrays (without pickle),
changing the metadata or an array, and writing a new npz.
"""

import json
import pickle

import numpy as np
import pytest
import soundfile as sf
from sklearn.exceptions import NotFittedError

from pse_nmf import BetaNMF, ModelFileError, SemiSupervisedNMF, load
from pse_nmf import load as load_model

SR = 16000


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).random((40, 12))


@pytest.fixture(scope="module")
def beta_nmf(frames):
    fixed = np.random.default_rng(1).random((2, 12))
    return BetaNMF(n_components=3, fixed_components=fixed, sparsity=0.1, max_iter=20, tol=0, random_state=0).fit(
        frames
    )


@pytest.fixture
def saved_semi(small_semi, tmp_path):
    return small_semi.save(tmp_path / "semi.npz")


def _contents(path):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
    return meta, arrays


def _write(path, meta, arrays):
    raw = json.dumps(meta).encode("utf-8") if not isinstance(meta, bytes) else meta
    with open(path, "wb") as fh:
        np.savez(fh, __meta__=np.frombuffer(raw, dtype=np.uint8), **arrays)
    return path


def _tampered(src, dst, change_meta=None, change_arrays=None):
    meta, arrays = _contents(src)
    if change_meta:
        change_meta(meta)
    if change_arrays:
        change_arrays(arrays)
    return _write(dst, meta, arrays)


# --------------------------------------------------------------------------- round trips


def test_betanmf_round_trip(beta_nmf, frames, tmp_path):
    path = beta_nmf.save(tmp_path / "nmf.npz")
    assert path == tmp_path / "nmf.npz" and path.is_file()
    loaded = load_model(path)
    assert type(loaded) is BetaNMF
    np.testing.assert_array_equal(loaded.components_, beta_nmf.components_)
    assert loaded.components_.dtype == beta_nmf.components_.dtype
    np.testing.assert_array_equal(loaded.fixed_components, beta_nmf.fixed_components)
    for name in ("n_components_", "n_iter_", "reconstruction_err_", "n_features_in_"):
        assert getattr(loaded, name) == getattr(beta_nmf, name)
    params, loaded_params = beta_nmf.get_params(), loaded.get_params()
    assert params.keys() == loaded_params.keys()
    for key in params:
        if key != "fixed_components":
            assert loaded_params[key] == params[key], key
    np.testing.assert_array_equal(loaded.transform(frames), beta_nmf.transform(frames))
    assert load is load_model


def test_semi_round_trip_identical_denoise(small_semi, saved_semi, real_mixture):
    loaded = load_model(saved_semi, expected=SemiSupervisedNMF)
    assert type(loaded) is SemiSupervisedNMF
    np.testing.assert_array_equal(loaded.components_, small_semi.components_)
    assert loaded.get_params() == small_semi.get_params()
    x = real_mixture.mixture[: 3 * SR]
    np.testing.assert_array_equal(loaded.denoise(x), small_semi.denoise(x))


def test_random_state_instance_is_not_saved(frames, tmp_path):
    model = BetaNMF(n_components=2, max_iter=5, tol=0, random_state=np.random.RandomState(0)).fit(frames)
    loaded = load_model(model.save(tmp_path / "m.npz"))
    assert loaded.random_state is None
    np.testing.assert_array_equal(loaded.components_, model.components_)


def test_save_refuses_overwrite(beta_nmf, small_semi, tmp_path):
    path = beta_nmf.save(tmp_path / "m.npz")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        small_semi.save(path)
    assert path.read_bytes() == before
    small_semi.save(path, overwrite=True)
    assert type(load_model(path)) is SemiSupervisedNMF
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no temporary files left


def test_save_unfitted(tmp_path):
    with pytest.raises(NotFittedError):
        BetaNMF().save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_saved_file_is_plain_npz_without_pickle(saved_semi):
    meta, arrays = _contents(saved_semi)  # readable with allow_pickle=False
    assert meta["format"] == "pse_nmf.model" and meta["estimator"] == "SemiSupervisedNMF"
    assert all(a.dtype != object for a in arrays.values())


# --------------------------------------------------------------------------- other kinds of file


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model(tmp_path / "nothing.npz")


def test_wav_file(tmp_path):
    sf.write(tmp_path / "x.wav", np.zeros(1600), SR)
    with pytest.raises(ModelFileError, match="not a readable pse_nmf model file"):
        load_model(tmp_path / "x.wav")


def test_npz_without_metadata(tmp_path):
    np.savez(tmp_path / "other.npz", components_=np.ones((3, 4)))
    with pytest.raises(ModelFileError, match="no metadata"):
        load_model(tmp_path / "other.npz")


def test_plain_npy(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((3, 4)))
    with pytest.raises(ModelFileError, match="single .npy array"):
        load_model(tmp_path / "a.npy")


def test_text_file(tmp_path):
    (tmp_path / "model.npz").write_text("components: [1, 2, 3]\n")
    with pytest.raises(ModelFileError, match="not a readable pse_nmf model file"):
        load_model(tmp_path / "model.npz")


def test_truncated_file(saved_semi, tmp_path):
    data = saved_semi.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(cut)


def test_damaged_metadata(saved_semi, tmp_path):
    _, arrays = _contents(saved_semi)
    path = _write(tmp_path / "bad.npz", b"\xff{not json", arrays)
    with pytest.raises(ModelFileError, match="damaged metadata"):
        load_model(path)


def test_metadata_not_an_object(saved_semi, tmp_path):
    _, arrays = _contents(saved_semi)
    path = _write(tmp_path / "list.npz", ["pse_nmf.model"], arrays)
    with pytest.raises(ModelFileError, match="not a pse_nmf model file"):
        load_model(path)


def test_other_format(saved_semi, tmp_path):
    path = _tampered(saved_semi, tmp_path / "f.npz", lambda m: m.update(format="someone_else.model"))
    with pytest.raises(ModelFileError, match="not a pse_nmf model file"):
        load_model(path)


@pytest.mark.parametrize("version", [2, 99, None])  # "1": test_format_version_as_text_is_called_damaged_not_newer
def test_newer_or_invalid_format_version(saved_semi, tmp_path, version):
    path = _tampered(saved_semi, tmp_path / "v.npz", lambda m: m.update(format_version=version))
    with pytest.raises(ModelFileError, match="format version"):
        load_model(path)


def test_unknown_estimator(saved_semi, tmp_path):
    path = _tampered(saved_semi, tmp_path / "u.npz", lambda m: m.update(estimator="os.system"))
    with pytest.raises(ModelFileError, match="unknown model kind 'os.system'"):
        load_model(path)


def test_unknown_parameter(saved_semi, tmp_path):
    path = _tampered(saved_semi, tmp_path / "p.npz", lambda m: m["params"].update(not_a_param=3))
    with pytest.raises(ModelFileError, match="parameters do not fit"):
        load_model(path)


def test_expected_mismatch(saved_semi, beta_nmf, tmp_path):
    with pytest.raises(ModelFileError, match="not a BetaNMF"):
        load_model(saved_semi, expected=BetaNMF)
    with pytest.raises(ModelFileError, match="holds a BetaNMF"):
        load_model(beta_nmf.save(tmp_path / "b.npz"), expected=(SemiSupervisedNMF,))
    assert type(load_model(saved_semi, expected=(BetaNMF, SemiSupervisedNMF))) is SemiSupervisedNMF


def test_components_shape_not_matching_n_components(saved_semi, tmp_path):
    path = _tampered(saved_semi, tmp_path / "s.npz",
                     change_arrays=lambda a: a.update({"attr:components_": a["attr:components_"][:-1]}))
    with pytest.raises(ModelFileError, match="components_ has shape"):
        load_model(path)


def test_components_shape_not_matching_bins(saved_semi, tmp_path):
    path = _tampered(saved_semi, tmp_path / "s.npz",
                     change_arrays=lambda a: a.update({"attr:components_": a["attr:components_"][:, :-1]}))
    with pytest.raises(ModelFileError, match="components_ has shape"):
        load_model(path)


def test_betanmf_components_shape_mismatch(beta_nmf, tmp_path):
    path = _tampered(beta_nmf.save(tmp_path / "b.npz"), tmp_path / "b2.npz",
                     change_arrays=lambda a: a.update({"attr:components_": a["attr:components_"][1:]}))
    with pytest.raises(ModelFileError, match="components_ has shape"):
        load_model(path)


def test_n_fft_not_matching_audio_settings(saved_semi, tmp_path):
    path = _tampered(saved_semi, tmp_path / "n.npz", lambda m: m["params"].update(n_fft=512))
    with pytest.raises(ModelFileError, match="audio settings"):
        load_model(path)


def test_n_fft_changed_consistently_fails_clearly_on_use(saved_semi, tmp_path, real_mixture):
    """A file whose n_fft was changed everywhere loads (a model fitted on frames may have any width),
    but denoising with it is refused with a clear message.
    """

    def change(meta):
        meta["params"]["n_fft"] = 512
        meta["audio"]["n_fft"] = 512

    loaded = load_model(_tampered(saved_semi, tmp_path / "n.npz", change))
    with pytest.raises(ValueError, match="fitted on frames of 513 bins"):
        loaded.denoise(real_mixture.mixture[:SR])


@pytest.mark.parametrize("kind", ["semi", "betanmf"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0])
def test_components_with_bad_values(saved_semi, beta_nmf, tmp_path, bad, kind):
    def change(arrays):
        D = arrays["attr:components_"].copy()
        D[-1, 0] = bad
        arrays["attr:components_"] = D

    src = saved_semi if kind == "semi" else beta_nmf.save(tmp_path / "b.npz")
    with pytest.raises(ModelFileError, match="negative or non-finite"):
        load_model(_tampered(src, tmp_path / "bad.npz", change_arrays=change))


@pytest.mark.parametrize("field, value", [
    ("params", [1, 2]), ("params", None), ("array_params", 3), ("attributes", "x"), ("estimator", ["SemiSupervisedNMF"]),
    ("estimator", None),
])
def test_damaged_metadata_fields(saved_semi, tmp_path, field, value):
    path = _tampered(saved_semi, tmp_path / "d.npz", lambda m: m.update({field: value}))
    with pytest.raises(ModelFileError, match=f"damaged metadata: '{field}'"):
        load_model(path)


def test_missing_fitted_array_and_value(saved_semi, tmp_path):
    path = _tampered(saved_semi, tmp_path / "a.npz", change_arrays=lambda a: a.pop("attr:components_"))
    with pytest.raises(ModelFileError, match="missing the fitted array 'components_'"):
        load_model(path)
    path = _tampered(saved_semi, tmp_path / "b.npz", lambda m: m["attributes"].pop("n_iter_"))
    with pytest.raises(ModelFileError, match="missing the fitted value 'n_iter_'"):
        load_model(path)


# --------------------------------------------------------------------------- never unpickle


class _Trap:
    """Unpickling this calls ``open(marker, "w")``: the marker file shows that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _assert_trap_sprung_when_unpickled(path, marker):
    """Sanity check of the trap itself (on a copy of the data, then cleaned up)."""
    with np.load(path, allow_pickle=True) as npz:
        for key in npz.files:
            value = npz[key]
            if value.dtype == object:
                for item in value.ravel():
                    if hasattr(item, "close"):
                        item.close()
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("key", ["attr:components_", "__meta__"])
def test_object_array_in_npz_is_refused_not_executed(saved_semi, tmp_path, key):
    marker = tmp_path / "code_ran"
    meta, arrays = _contents(saved_semi)
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap(marker)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    arrays[key] = trap
    path = tmp_path / "trap.npz"
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)  # np.savez pickles object arrays
    _assert_trap_sprung_when_unpickled(path, marker)
    with pytest.raises(ModelFileError, match="not a readable pse_nmf model file"):
        load_model(path)
    assert not marker.exists()


def test_pickle_file_is_refused_not_executed(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "model.npz"
    path.write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(ModelFileError, match="not a readable pse_nmf model file"):
        load_model(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- dictionaries validated on load (issue 19)

@pytest.mark.parametrize("corrupt, message", [
    (lambda D: np.zeros_like(D), "atom"),  # loaded and denoised to all-silent audio before
    (lambda D: np.concatenate([D[:-1], np.zeros_like(D[-1:])]), "atom 15 is all zeros"),
    (lambda D: D.astype(np.complex128), "complex"),
    (lambda D: (D > D.mean()), "dtype bool"),
    (lambda D: (D * 1000).astype(np.int64), "dtype int64"),
])
def test_degenerate_or_wrongly_typed_dictionary_is_refused(saved_semi, tmp_path, corrupt, message):
    path = _tampered(saved_semi, tmp_path / "d.npz",
                     change_arrays=lambda a: a.update({"attr:components_": corrupt(a["attr:components_"])}))
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(path)
    assert "d.npz" in str(info.value) and "components_" in str(info.value)


@pytest.mark.parametrize("name", ["components_", "initial_noise_components_"])
def test_online_dictionaries_validated_on_load(small_semi, tmp_path, name):
    from pse_nmf import OnlineNMF

    src = OnlineNMF(speech_model=small_semi, random_state=0).fit().save(tmp_path / "o.npz")
    path = _tampered(src, tmp_path / "z.npz",
                     change_arrays=lambda a: a.update({f"attr:{name}": np.zeros_like(a[f"attr:{name}"])}))
    with pytest.raises(ModelFileError, match=f"{name}.*all zeros"):
        load_model(path)


def test_complex_array_parameter_is_refused(beta_nmf, tmp_path):
    src = beta_nmf.save(tmp_path / "b.npz")
    path = _tampered(src, tmp_path / "c.npz", change_arrays=lambda a: a.update(
        {"param:fixed_components": a["param:fixed_components"] + 1j}))
    with pytest.raises(ModelFileError, match="fixed_components.*complex"):
        load_model(path)


def test_format_version_as_text_is_called_damaged_not_newer(saved_semi, tmp_path):
    path = _tampered(saved_semi, tmp_path / "v.npz", lambda m: m.update(format_version="1"))
    with pytest.raises(ModelFileError, match="damaged metadata: 'format_version' should be an integer") as info:
        load_model(path)
    assert "newer" not in str(info.value)


@pytest.mark.parametrize("name, value", [("mask_power", "x"), ("n_noise_components", -2), ("known", "both")])
def test_parameters_validated_on_load(saved_semi, tmp_path, name, value):
    """A hand-edited parameter loaded silently and failed later inside numpy ("ufunc 'power' not supported")."""
    path = _tampered(saved_semi, tmp_path / "p.npz", lambda m: m["params"].update({name: value}))
    with pytest.raises(ModelFileError, match=f"p.npz.*{name}"):
        load_model(path)
