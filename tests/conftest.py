"""Shared fixtures: the embedded example data, the developer set, real mixtures.

Real audio comes from the developer set in ``../shared/data`` when it is
present; tests that need it specifically use ``dev_data`` (skipped when it is
absent), the others use ``audio_root``, which falls back to the example data
shipped with the package. Nothing here touches the network or writes expected
values.
"""

from pathlib import Path

import numpy as np
import pytest

DEV_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SR = 16000


def _has_dev_data(root):
    return (root / "speech").is_dir() and (root / "noise").is_dir()


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread():
    """Run the suite with one BLAS thread.

    The test machines are small (2 cores) and shared; OpenBLAS threads
    spinning against other processes made the audio tests 6x slower in wall
    time (95 s instead of 16 s). Tests of thread handling set their own limits.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def example():
    """The example data: Bunch(speech={spk: [arrays]}, noise={type: [arrays]}, sr, root)."""
    from pse_nmf.datasets import load_example

    return load_example()


@pytest.fixture(scope="session")
def dev_data():
    """Path of the developer audio set; the test is skipped when it is absent."""
    if not _has_dev_data(DEV_DATA):
        pytest.skip(f"developer audio set not found at {DEV_DATA}")
    return DEV_DATA


@pytest.fixture(scope="session")
def audio_root():
    """Folder with speech/ and noise/: the developer set, else the example data."""
    if _has_dev_data(DEV_DATA):
        return DEV_DATA
    from pse_nmf.datasets import example_path

    return example_path()


@pytest.fixture(scope="session")
def example_task(example):
    """One example speaker: ~30 s enrollment and two 0 dB test mixtures (example data only)."""
    from pse_nmf.datasets import make_personalization_task

    root = example.root
    speaker = sorted(example.speech)[0]
    return make_personalization_task(
        root / "speech", root / "noise", speaker, enroll_seconds=30, snrs=(0,), n_test=1,
        noise_types=["running_tap"], random_state=0,
    )


@pytest.fixture(scope="session")
def real_mixture(example_task):
    """A real 0 dB mixture: TestMixture(mixture, speech, noise, ...)."""
    return example_task.test[0]


@pytest.fixture(scope="session")
def small_semi(example_task):
    """A small SemiSupervisedNMF fitted on real enrollment speech (fast settings).

    Shared by several tests: do not modify it (clone it instead).
    """
    from pse_nmf import SemiSupervisedNMF

    model = SemiSupervisedNMF(n_components=16, n_noise_components=4, max_iter=40, test_max_iter=40, tol=0,
                              random_state=0)
    return model.fit(example_task.enrollment)


@pytest.fixture
def rng():
    """A fresh seeded generator per test (no global seeding anywhere)."""
    return np.random.default_rng(0)
