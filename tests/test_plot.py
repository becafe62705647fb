"""Tests of the figures (:mod:`pse_nmf.plotting`)."""

import sys

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread

from pse_nmf.plotting import plot_activations, plot_dictionary, plot_spectrograms

SR = 16000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _panels(fig):
    """The axes holding a data image, excluding colour bars."""
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def _colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


@pytest.fixture(scope="module")
def speech(example):
    return example.speech[sorted(example.speech)[0]][0]


def test_spectrograms_panels_png_and_shared_scale(speech, tmp_path):
    path = tmp_path / "spec.png"
    short = speech[: speech.size // 2]
    signals = {"noisy": speech, "enhanced": 0.1 * speech, "clean": short}
    fig = plot_spectrograms(signals, SR, path, title="before / after")

    panels = _panels(fig)
    assert [ax.get_title(loc="left") for ax in panels] == list(signals)
    assert len(_colorbars(fig)) == 1 and len(fig.axes) == 4
    assert isinstance(fig.canvas, FigureCanvasAgg)
    assert panels[-1].get_xlabel() == "time (s)" and panels[0].get_ylabel() == "frequency (kHz)"
    # one colour scale for all panels
    assert len({panels[i].images[0].get_clim() for i in range(3)}) == 1
    # a signal at a tenth of the level sits 20 dB lower on that scale
    top = [ax.images[0].get_array().max() for ax in panels]
    assert top[0] - top[1] == pytest.approx(20.0, abs=0.01)
    # the shared time axis shows the longest signal; frequencies reach Nyquist in kHz
    left, right = panels[0].get_xlim()
    assert right == pytest.approx(speech.size / SR, abs=256 / SR)
    assert panels[0].get_ylim()[1] == pytest.approx(SR / 2000, abs=0.05)

    assert path.read_bytes()[:8] == PNG_MAGIC
    width, height = fig.get_size_inches() * 100
    assert imread(path).shape[:2] == (round(height), round(width))
    assert [p.name for p in tmp_path.iterdir()] == ["spec.png"]  # no temporary file left


def test_spectrograms_leave_pyplot_alone(speech):
    backend = matplotlib.get_backend()
    figures = sys.modules["matplotlib.pyplot"].get_fignums() if "matplotlib.pyplot" in sys.modules else None
    plot_spectrograms({"x": speech[:SR]})
    assert matplotlib.get_backend() == backend
    if figures is not None:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == figures


def test_spectrograms_of_silence_are_finite():
    fig = plot_spectrograms({"silence": np.zeros(SR)})
    assert np.all(np.isfinite(_panels(fig)[0].images[0].get_array()))


@pytest.mark.parametrize("signals, error, match", [
    ({}, ValueError, "empty"),
    ([np.ones(SR)], TypeError, "mapping"),
    ({"bad": np.array([0.0, np.nan] * 2000)}, ValueError, "NaN"),
    ({"stereo": np.ones((SR, 2))}, ValueError, "channel"),
    ({"empty": np.array([])}, ValueError, "empty"),
])
def test_spectrograms_errors(signals, error, match):
    with pytest.raises(error, match=match):
        plot_spectrograms(signals)


def test_spectrograms_refuse_to_overwrite(speech, tmp_path):
    path = tmp_path / "spec.png"
    path.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="overwrite"):
        plot_spectrograms({"x": speech[:SR]}, path=path)
    assert path.read_bytes() == b"keep"
    plot_spectrograms({"x": speech[:SR]}, path=path, overwrite=True)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_dictionary(rng, tmp_path):
    D = rng.random((10, 513))
    D[3] *= 1e-3  # a quiet atom is shown on its own scale
    path = tmp_path / "dict.png"
    fig = plot_dictionary(D, SR, 1024, path, block_sizes=[6, 4])
    (panel,) = _panels(fig)
    image = panel.images[0].get_array()
    assert image.shape == (513, 10)  # frequency upwards, one column per atom
    np.testing.assert_allclose(np.asarray(image).max(axis=0), 0.0, atol=1e-9)
    assert len(panel.lines) == 1  # one block boundary
    assert path.read_bytes()[:8] == PNG_MAGIC and imread(path).ndim == 3


def test_dictionary_shows_at_most_max_atoms(rng):
    fig = plot_dictionary(rng.random((100, 513)), max_atoms=16)
    (panel,) = _panels(fig)
    assert panel.images[0].get_array().shape == (513, 16)
    assert "16 of 100" in panel.get_xlabel()


@pytest.mark.parametrize("components, kwargs, match", [
    (np.ones((4, 100)), {}, "bins per atom"),
    (np.ones(513), {}, "2-D"),
    (np.ones((0, 513)), {}, "empty"),
    (-np.ones((4, 513)), {}, "non-negative"),
    (np.full((4, 513), np.nan), {}, "NaN"),
    (np.ones((4, 513)), {"block_sizes": [3, 3]}, "sum to 6"),
    (np.ones((4, 513)), {"max_atoms": 0}, "positive integer"),
])
def test_dictionary_errors(components, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_dictionary(components, **kwargs)


def test_activations(rng, tmp_path):
    A = rng.random((50, 12))
    path = tmp_path / "act.png"
    fig = plot_activations(A, 256, SR, path, block_sizes=[8, 4], title="activations")
    (panel,) = _panels(fig)
    image = panel.images[0].get_array()
    assert image.shape == (12, 50)  # atoms upwards, time to the right
    assert image.max() == pytest.approx(0.0)
    assert panel.get_xlim()[1] == pytest.approx(49.5 * 256 / SR)
    assert len(panel.lines) == 1
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("activations, match", [
    (np.ones(50), "2-D"),
    (np.ones((50, 0)), "empty"),
    (np.array([["a", "b"]]), "numeric"),
])
def test_activations_errors(activations, match):
    with pytest.raises(ValueError, match=match):
        plot_activations(activations, 256, SR)
