"""Tests of the dictionary-denoiser family as a whole (issue 18) and its enrollment minimum (issue 19).

One base (``pse_nmf.decomposition._base._DictionaryDenoiser``) serves SemiSupervisedNMF, USM, MLD and
ExemplarNMF: the minimum-enrollment check, the test-time recipe and the ``_mask(V)`` hook; the old flat
names of ``pse_nmf`` still resolve, with a FutureWarning.
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

import pse_nmf
from pse_nmf import MLD, USM, ExemplarNMF, SemiSupervisedNMF
from pse_nmf.decomposition._base import _DictionaryDenoiser

SR = 16000
FAST = {
    "SemiSupervisedNMF": dict(n_components=4, n_noise_components=2, max_iter=5, test_max_iter=5),
    "MLD": dict(n_dictionaries=2, n_components_per_dictionary=2, n_noise_components=2, max_iter=5, test_max_iter=5,
                noise_init="staged"),
    "ExemplarNMF": dict(n_exemplars=20, n_noise_components=2, test_max_iter=5),
}
CLASSES = {"SemiSupervisedNMF": SemiSupervisedNMF, "MLD": MLD, "ExemplarNMF": ExemplarNMF}


@pytest.fixture(scope="module")
def speech(example):
    return np.concatenate(example.speech[sorted(example.speech)[0]])


@pytest.fixture(scope="module")
def universal(example):
    """A tiny USM on 4 s of each of the other three example speakers (above the minimum)."""
    train = {spk: [np.concatenate(u)[: 4 * SR]] for spk, u in sorted(example.speech.items())[1:]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return USM(n_components_per_speaker=2, n_noise_components=2, max_iter=5, test_max_iter=5,
                   random_state=0).fit(train)


def _ignoring_warnings(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def test_every_dictionary_denoiser_shares_the_base():
    for cls in (SemiSupervisedNMF, USM, MLD, ExemplarNMF):
        assert issubclass(cls, _DictionaryDenoiser)
        # measured per estimator (benchmarks/enrollment.py, docs/experiments/enrollment.md)
        assert cls.get_params(cls())["min_seconds"] == (2.0 if cls is USM else 3.0)


# --------------------------------------------------------------------------- enrollment minimum (issue 19, item 4)

@pytest.mark.parametrize("name", sorted(CLASSES))
def test_fit_refuses_too_little_speech_naming_the_parameter(name, speech):
    with pytest.raises(ValueError, match=r"0\.5 s of speech recordings.*at least 3\.0 s.*min_seconds=0"):
        CLASSES[name](random_state=0, **FAST[name]).fit(speech[: SR // 2])
    # a list of recordings counts together: 4 x 0.5 s is still too little
    with pytest.raises(ValueError, match=r"2\.0 s of speech recordings.*min_seconds"):
        CLASSES[name](random_state=0, **FAST[name]).fit([speech[i * SR: i * SR + SR // 2] for i in range(4)])


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_min_seconds_zero_opts_out_and_the_grey_zone_warns(name, speech):
    est = CLASSES[name](random_state=0, min_seconds=0, **FAST[name])
    with pytest.warns(UserWarning, match=r"only 0\.5 s of speech recordings.*10 s") as record:
        _ = est.fit(speech[: SR // 2])
    grey = [w for w in record if issubclass(w.category, UserWarning) and "only 0.5 s" in str(w.message)]
    assert grey[0].filename == __file__  # the warning points at the caller of fit
    out = est.denoise(speech[: 2 * SR])
    assert out.shape == (2 * SR,) and np.all(np.isfinite(out))
    # enough speech: neither error nor grey-zone warning
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        CLASSES[name](random_state=0, **FAST[name]).fit(speech[: 11 * SR])
    assert not [w for w in record if "too little" in str(w.message) or "only " in str(w.message)]


def test_min_seconds_is_validated():
    with pytest.raises(ValueError, match="min_seconds"):
        MLD(min_seconds=-1.0).fit(np.ones((20, 9)))


def test_frames_carry_no_duration(speech):
    frames = np.random.default_rng(0).random((6, 513))
    for name, cls in CLASSES.items():
        _ignoring_warnings(cls(random_state=0, **FAST[name]).fit, frames)  # no duration check on frames


def test_usm_personalize_refuses_too_little_enrollment(universal, speech):
    import copy

    model = copy.deepcopy(universal)
    with pytest.raises(ValueError, match=r"0\.5 s of speaker 'target'.*at least 2\.0 s.*min_seconds=0"):
        _ignoring_warnings(model.personalize, speech[: SR // 2], "target")
    assert model.speakers_ == universal.speakers_  # unchanged
    model.set_params(min_seconds=0)
    with pytest.warns(UserWarning, match=r"only 0\.5 s of speaker 'target'"):
        model.personalize(speech[: SR // 2], "target")
    assert model.speakers_[-1] == "target"


@pytest.mark.slow
def test_usm_few_shot_below_its_minimum_is_worse_than_the_noisy_input(example):
    """USM's min_seconds=2.0 reproduced: few-shot personalization on 1 s of enrollment makes the mixtures worse.

    The same recipe as benchmarks/enrollment.py --estimator USM (dev set: 1 s -1.06 dB, 2 s +0.90 dB), smaller:
    a universal model on 4 s of each other example speaker, 50 iterations, two utterances at 0 and 5 dB.
    """
    import copy

    from pse_nmf.datasets import mix_at_snr
    from pse_nmf.metrics import si_sdr

    target, *others = sorted(example.speech)
    universal = _ignoring_warnings(USM(max_iter=50, random_state=0).fit,
                                   {s: [np.concatenate(example.speech[s])[: 4 * SR]] for s in others})
    enrollment, tests = np.concatenate(example.speech[target][:-2]), example.speech[target][-2:]
    noises = [clip for clips in example.noise.values() for clip in clips]
    pairs = [(mix_at_snr(s, noises[3 * i % len(noises)], snr, random_state=i)[0], s)
             for i, s in enumerate(tests) for snr in (0, 5)]

    def improvement(seconds):
        model = copy.deepcopy(universal).set_params(min_seconds=0)
        _ignoring_warnings(model.personalize, enrollment[: int(seconds * SR)], "target", mode="few-shot")
        return np.mean([si_sdr(model.denoise(x), s) - si_sdr(x, s) for x, s in pairs])

    assert improvement(1.0) < 0.0 < improvement(universal.min_seconds)


def test_usm_fit_refuses_too_little_speech_in_total(example):
    tiny = {spk: [u[0][: SR // 4]] for spk, u in example.speech.items()}  # 4 x 0.25 s
    with pytest.raises(ValueError, match=r"1\.0 s of speech recordings.*min_seconds=0"):
        USM(n_components_per_speaker=2, max_iter=3).fit(tiny)
    with pytest.warns(UserWarning, match=r"only 1\.0 s"):
        USM(n_components_per_speaker=2, max_iter=3, min_seconds=0).fit(tiny)


# --------------------------------------------------------------------------- the old flat namespace

@pytest.mark.parametrize("name, home", [
    ("si_sdr", "pse_nmf.metrics"), ("read_audio", "pse_nmf.audio"), ("stft", "pse_nmf.audio"),
    ("mix_at_snr", "pse_nmf.datasets"), ("make_personalization_task", "pse_nmf.datasets"),
    ("plot_spectrograms", "pse_nmf.plotting"), ("plot_block_usage", "pse_nmf.plotting"),
    ("non_negative_factorization", "pse_nmf.decomposition"), ("load_model", "pse_nmf"),
])
def test_old_flat_names_warn_and_resolve(name, home):
    import importlib

    with pytest.warns(FutureWarning, match=rf"pse_nmf\.{name} moved to"):
        obj = getattr(pse_nmf, name)
    new = pse_nmf.load if name == "load_model" else getattr(importlib.import_module(home), name)
    assert obj is new
    assert name not in pse_nmf.__all__


def test_old_flat_import_statement_warns():
    with pytest.warns(FutureWarning, match="pse_nmf.si_sdr moved to pse_nmf.metrics.si_sdr"):
        from pse_nmf import si_sdr  # noqa: F401


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pse_nmf.nope  # noqa: B018


def test_public_namespace_is_estimators_load_and_subpackages():
    import inspect

    for name in pse_nmf.__all__:
        obj = getattr(pse_nmf, name)
        assert inspect.isclass(obj) or inspect.ismodule(obj) or callable(obj) or name == "__version__", name
    assert {"audio", "metrics", "datasets", "plotting", "load"} <= set(pse_nmf.__all__)


# --------------------------------------------------------------------------- single pass (issue 18, item 6)

@pytest.fixture(scope="module")
def noisy(example, speech):
    noise = example.noise["street_tram_bus"][0]
    return (speech[-3 * SR:] + 0.3 * noise[: 3 * SR]).astype(np.float32)


def _fitted(name, speech):
    kw = dict(FAST[name])  # MLD smooths its mask over 3 frames (a fixed setting); the tests of it patch ExemplarNMF's
    if name == "ExemplarNMF":
        kw.update(noise_init="staged-averaged")
    return _ignoring_warnings(CLASSES[name](random_state=0, **kw).fit, speech[: 11 * SR])


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_denoise_masks_and_inverse_transforms_once(name, speech, noisy, monkeypatch):
    import pse_nmf.audio._mixin as mixin

    monkeypatch.setattr(ExemplarNMF, "mask_smoothing", 3)  # the smoothed path too (MLD's fixed setting is 3)
    model = _fitted(name, speech)
    calls = []
    real_istft = mixin.istft
    monkeypatch.setattr(mixin, "istft", lambda *a, **k: calls.append(1) or real_istft(*a, **k))
    out = model.denoise(noisy)
    assert len(calls) == 1  # no noise waveform built and thrown away
    speech_part, noise_part = model.separate(noisy)
    assert len(calls) == 3  # separate: speech and noise
    np.testing.assert_array_equal(out, speech_part)
    np.testing.assert_allclose(speech_part + noise_part, noisy, atol=1e-4)


@pytest.mark.parametrize("name", ["MLD", "ExemplarNMF"])
def test_averaged_mask_equals_the_old_pseudo_magnitude_round_trip(name, speech, noisy, monkeypatch):
    """Until issue 18 an averaged or smoothed mask M was passed on as V M^(1/p), V (1-M)^(1/p) and turned
    back into a mask; the mask is now applied directly, equal to the old path within float round-off.
    """
    from pse_nmf.audio import istft, ratio_mask, stft

    monkeypatch.setattr(ExemplarNMF, "mask_smoothing", 3)  # the smoothed path too (MLD's fixed setting is 3)
    model = _fitted(name, speech)
    S = stft(noisy, n_fft=model.n_fft, hop_length=model.hop_length)
    V = np.abs(S)
    M = model._mask(V)
    p = model.mask_power
    old_mask = ratio_mask(V * M ** (1 / p), V * (1 - M) ** (1 / p), power=p)
    old = istft(S * old_mask, n_fft=model.n_fft, hop_length=model.hop_length, length=noisy.size)
    new = model.denoise(noisy)
    np.testing.assert_allclose(new, old, rtol=0, atol=1e-5 * np.abs(old).max())
    np.testing.assert_allclose(model.transform(V), V * old_mask, rtol=1e-4, atol=1e-6 * V.max())


# --------------------------------------------------------------------------- USM's few-shot setting (issue 18, item 4)

def test_usm_few_shot_mode_is_the_block_plus_the_preset(universal, speech, noisy):
    import copy

    enrollment = speech[: 4 * SR]
    a = _ignoring_warnings(copy.deepcopy(universal).personalize, enrollment, "me", mode="few-shot")
    b = _ignoring_warnings(copy.deepcopy(universal).personalize, enrollment, "me", n_components=64)
    b.set_params(**USM.few_shot_params("me"))
    assert a.block_sizes_[-1] == 64 == USM.FEW_SHOT_COMPONENTS
    assert a.get_params() == b.get_params()
    assert a.get_params()["speaker_sparsity"] == {"me": 0.0} and a.noise_init == "staged-averaged"
    np.testing.assert_array_equal(a.denoise(noisy), b.denoise(noisy))
    # an existing per-speaker weight is kept; the block mode leaves the parameters alone
    c = copy.deepcopy(universal).set_params(speaker_sparsity={"other": 2.0})
    _ignoring_warnings(c.personalize, enrollment, "me", mode="few-shot")
    assert c.speaker_sparsity == {"other": 2.0, "me": 0.0}
    d = _ignoring_warnings(copy.deepcopy(universal).personalize, enrollment, "me")
    assert d.get_params() == universal.get_params() and d.block_sizes_[-1] == universal.n_components_per_speaker
    with pytest.raises(ValueError, match="mode must be 'block' or 'few-shot'"):
        copy.deepcopy(universal).personalize(enrollment, "me", mode="fewshot")


# --------------------------------------------------------------------------- a removed parameter (issue 18, item 4)

def test_mld_files_saved_with_unstaged_iter_still_load(speech, noisy, tmp_path):
    """MLD lost unstaged_iter (never measured on MLD, always 0); files written before still load, and one that
    used another value is refused with the reason, not a TypeError."""
    import json

    model = _fitted("MLD", speech)
    assert "unstaged_iter" not in model.get_params()
    path = model.save(tmp_path / "mld.npz")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))

    def old_file(value, name):
        m = json.loads(json.dumps(meta))
        m["params"]["unstaged_iter"] = value
        out = tmp_path / name
        np.savez(out, __meta__=np.frombuffer(json.dumps(m).encode(), dtype=np.uint8), **arrays)
        return out

    loaded = pse_nmf.load(old_file(0, "old.npz"))
    np.testing.assert_array_equal(loaded.denoise(noisy), model.denoise(noisy))
    with pytest.raises(pse_nmf.ModelFileError, match="saved with unstaged_iter=25.*removed from MLD"):
        pse_nmf.load(old_file(25, "old25.npz"))


def _as_old_file(model, tmp_path, name, edit):
    """Save ``model``, then rewrite the file's parameters as an older release wrote them (``edit(params)``)."""
    import json

    path = model.save(tmp_path / f"{name}_new.npz")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
    edit(meta["params"])
    out = tmp_path / f"{name}.npz"
    np.savez(out, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return out


def _rename(params, old_and_new):
    for old, new in old_and_new.items():
        params[old] = params.pop(new)


def test_semi_files_saved_with_the_old_names_still_load(speech, noisy, tmp_path):
    """n_test_components / test_sparsity became n_noise_components / noise_sparsity (one name in the family)."""
    model = _fitted("SemiSupervisedNMF", speech).set_params(n_noise_components=3, noise_sparsity=0.5)
    old = {"n_test_components": "n_noise_components", "test_sparsity": "noise_sparsity"}
    loaded = pse_nmf.load(_as_old_file(model, tmp_path, "semi", lambda p: _rename(p, old)))
    assert (loaded.n_noise_components, loaded.noise_sparsity) == (3, 0.5)
    assert not set(old) & set(loaded.get_params())
    np.testing.assert_array_equal(loaded.denoise(noisy), model.denoise(noisy))

    def both(p):
        p["n_test_components"] = 3

    with pytest.raises(pse_nmf.ModelFileError, match="both 'n_test_components' and its new name"):
        pse_nmf.load(_as_old_file(model, tmp_path, "semi_both", both))


def test_online_files_saved_with_the_former_parameters_still_load(speech, noisy, tmp_path):
    """OnlineNMF: n_iter / n_dict_iter renamed (n_iter_ is the speech fit's); four heuristics became constants."""
    model = _ignoring_warnings(pse_nmf.OnlineNMF(n_components=6, n_noise_components=3, max_iter=5, n_frame_iter=5,
                                                 random_state=0).fit, speech[: 4 * SR])

    def old(p, **removed):
        _rename(p, {"n_iter": "n_frame_iter", "n_dict_iter": "n_window_iter"})
        p.update({"warm_start": 0.95, "update_every": 1, "n_replace": 3, "replace_recent": 16, **removed})

    loaded = pse_nmf.load(_as_old_file(model, tmp_path, "online", old))
    assert loaded.get_params() == {**model.get_params(), "speech_model": None}
    np.testing.assert_array_equal(loaded.denoise(noisy), model.denoise(noisy))
    with pytest.raises(pse_nmf.ModelFileError, match="saved with n_replace=1.*removed from OnlineNMF"):
        pse_nmf.load(_as_old_file(model, tmp_path, "online1", lambda p: old(p, n_replace=1)))


@pytest.mark.parametrize("name, old, expected", [
    ("MLD", {"quiet_noise_iter": 100, "fixed_noise_iter": 50, "block_penalty": "log"}, "staged"),
    ("MLD", {"quiet_noise_iter": 0, "fixed_noise_iter": 0}, "quiet"),
    ("MLD", {}, "staged"),  # a file without the keys: the old defaults (100, 50)
    ("ExemplarNMF", {"quiet_noise_iter": 100, "fixed_noise_iter": 50, "unstaged_iter": 100}, "staged-averaged"),
    ("ExemplarNMF", {"quiet_noise_iter": 100, "fixed_noise_iter": 50, "unstaged_iter": 0}, "staged"),
    ("ExemplarNMF", {"quiet_noise_iter": 0, "fixed_noise_iter": 0, "unstaged_iter": 7}, "quiet"),  # 7 had no effect
])
def test_files_saved_with_the_staged_noise_knobs_load_as_noise_init(name, old, expected, speech, noisy, tmp_path):
    model = _fitted(name, speech).set_params(noise_init=expected)

    def edit(p):
        del p["noise_init"]
        p.update(old)

    loaded = pse_nmf.load(_as_old_file(model, tmp_path, name, edit))
    assert loaded.noise_init == expected and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.denoise(noisy), model.denoise(noisy))


@pytest.mark.parametrize("name, old, match", [
    ("MLD", {"quiet_noise_iter": 20, "fixed_noise_iter": 50}, "quiet_noise_iter=20, fixed_noise_iter=50"),
    ("MLD", {"block_penalty": "l2"}, "saved with block_penalty='l2'.*removed from MLD"),
    ("ExemplarNMF", {"quiet_noise_iter": 100, "fixed_noise_iter": 50, "unstaged_iter": 12}, "unstaged_iter=12"),
])
def test_files_saved_with_settings_no_longer_offered_are_refused(name, old, match, speech, tmp_path):
    model = _fitted(name, speech)
    with pytest.raises(pse_nmf.ModelFileError, match=match + ".*refit the model"):
        pse_nmf.load(_as_old_file(model, tmp_path, name, lambda p: (p.pop("noise_init"), p.update(old))))


# --------------------------------------------------------------------------- scikit-learn checks on OnlineNMF too

@parametrize_with_checks([pse_nmf.OnlineNMF(n_components=3, n_noise_components=2, max_iter=5, buffer_size=4,
                                            random_state=0)])
def test_online_nmf_sklearn_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        check(estimator)


def test_online_nmf_fitted_on_other_frames_refuses_to_stream():
    model = _ignoring_warnings(pse_nmf.OnlineNMF(n_components=3, n_noise_components=2, max_iter=5).fit,
                               np.random.default_rng(0).random((20, 7)))
    assert model.n_features_in_ == 7
    with pytest.raises(ValueError, match="fitted on frames of 7 bins, but n_fft=1024 needs 513"):
        model.denoise(np.zeros(4096, np.float32) + 0.1)
