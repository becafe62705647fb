"""``n_jobs`` on the estimators' independent per-speaker work (USM's blocks, MLD's local dictionaries).

The serial loop of the blocks is the oracle: it is rebuilt here from the private
``_fit_block`` (one block per piece, one random generator drawn in turn).
"""

import warnings

import numpy as np
import pytest
from sklearn.utils import check_random_state

from pse_nmf import MLD, USM
from pse_nmf.datasets import load_example


@pytest.fixture(scope="module")
def speakers():
    data = load_example()
    return {spk: utts[:2] for spk, utts in data.speech.items()}


def _frames(n_speakers=3, n_frames=40, n_bins=24, seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.gamma(1.0 + k, size=(n_frames, n_bins)) for k in range(n_speakers)])
    y = np.repeat([f"s{k}" for k in range(n_speakers)], n_frames)
    return X, y


def test_usm_blocks_equal_the_serial_loop():
    X, y = _frames()
    rng = check_random_state(0)  # the oracle: one generator, the blocks fitted one after the other
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few iterations: ConvergenceWarning
        model = USM(n_components_per_speaker=3, max_iter=20, random_state=0, n_jobs=2).fit(X, y)
        blocks = [model._fit_block(X[y == spk], 3, rng, spk)[0] for spk in ("s0", "s1", "s2")]
    np.testing.assert_array_equal(model.components_, np.vstack(blocks))


@pytest.mark.parametrize("make", [
    lambda n_jobs: USM(n_components_per_speaker=4, max_iter=20, random_state=0, n_jobs=n_jobs),
    lambda n_jobs: MLD(n_dictionaries=3, n_components_per_dictionary=4, max_iter=20, random_state=0, n_jobs=n_jobs),
], ids=["USM", "MLD"])
def test_n_jobs_gives_the_serial_result(make, speakers):
    X = speakers if isinstance(make(None), USM) else [u for utts in speakers.values() for u in utts]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few iterations: ConvergenceWarning
        serial, parallel = make(1).fit(X), make(2).fit(X)
    np.testing.assert_array_equal(serial.components_, parallel.components_)
    assert serial.n_iter_ == parallel.n_iter_
    noisy = speakers["so762_9604"][-1]
    np.testing.assert_array_equal(serial.denoise(noisy), parallel.denoise(noisy))


def test_a_failing_block_is_reported_from_the_workers():
    X, y = _frames()
    X[y == "s1"] = 0.0
    with pytest.raises(ValueError, match="speaker 's1'.* silent"):
        USM(n_components_per_speaker=3, max_iter=5, random_state=0, n_jobs=2).fit(X, y)
