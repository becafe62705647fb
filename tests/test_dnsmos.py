"""pse_nmf.dnsmos: the DNS challenge's no-reference scores, offline, from the models in the speechmos wheel."""

import socket
from importlib import metadata

import numpy as np
import pytest

pytest.importorskip("speechmos")
pytest.importorskip("onnxruntime")

from pse_nmf.audio import resample  # noqa: E402
from pse_nmf.datasets import mix_at_snr  # noqa: E402
from pse_nmf.metrics import dnsmos  # noqa: E402

SR = 16000


def _block_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve a name or open a connection fails the test."""
    _block_network(monkeypatch)


@pytest.fixture(scope="module")
def clips(example):
    """A 4.6 s clean utterance (repeated to 9.2 s: one 9.01 s DNSMOS window) and its 0 dB street mixture."""
    clean = example.speech["so762_9618"][0][: int(4.6 * SR)]
    noisy, _ = mix_at_snr(clean, example.noise["street_tram_bus"][0], 0.0, random_state=0)
    return clean, 0.5 * noisy


@pytest.fixture(scope="module")
def scores(clips):
    """Our scores of the clips, computed once with the network closed (the first call loads the models)."""
    clean, noisy = clips
    with pytest.MonkeyPatch.context() as mp:
        _block_network(mp)
        return {"clean": dnsmos(clean, SR), "noisy": dnsmos(noisy, SR),
                "noisy_personalized": dnsmos(noisy, SR, personalized=True)}


def test_models_come_from_the_wheel():
    files = {str(f) for f in metadata.files("speechmos")}
    for name in ("speechmos/dnsmos_models/sig_bak_ovr.onnx", "speechmos/dnsmos_models/model_v8.onnx",
                 "speechmos/pdnsmos_models/sig_bak_ovr.onnx"):
        assert name in files


def test_scores_offline_match_the_reference_code(clips, scores):
    from speechmos import dnsmos as reference

    clean, noisy = clips
    for personalized in (False, True):
        ours = scores["noisy_personalized" if personalized else "noisy"]
        theirs = reference.run(noisy, SR, model_type="dnsmos_personalized" if personalized else "dnsmos")
        assert sorted(ours) == ["bak", "ovrl", "p808", "sig"]
        for key in ("sig", "bak", "ovrl", "p808"):
            assert ours[key] == pytest.approx(float(theirs[f"{key}_mos"]), abs=1e-4)


def test_clean_scores_above_noisy(scores):
    c, n = scores["clean"], scores["noisy"]
    assert all(1.0 <= v <= 5.0 for v in [*c.values(), *n.values()])
    assert c["bak"] > n["bak"] + 1.0 and c["ovrl"] > n["ovrl"] + 0.5
    assert scores["noisy_personalized"]["p808"] == n["p808"]  # one P.808 model for both
    assert scores["noisy_personalized"]["sig"] != n["sig"]


def test_other_rates_are_resampled(clips, no_network):
    clean, _ = clips
    at_8k = dnsmos(resample(clean, SR, 8000), 8000)
    assert at_8k.keys() == {"sig", "bak", "ovrl", "p808"}
    assert all(np.isfinite(v) for v in at_8k.values())


def test_bad_input():
    with pytest.raises(ValueError, match="at least 1 s"):
        dnsmos(np.ones(8000, np.float32) * 0.1, SR)
    with pytest.raises(ValueError, match="silent"):
        dnsmos(np.zeros(2 * SR, np.float32), SR)
    with pytest.raises(ValueError, match="sr"):
        dnsmos(np.ones(2 * SR, np.float32) * 0.1, 0)


def test_cli_evaluate_without_reference_reports_dnsmos(clips, scores, tmp_path, capsys, no_network):
    import json

    from pse_nmf._cli import main
    from pse_nmf.audio import write_audio

    clean, noisy = clips
    enh = write_audio(tmp_path / "clean.wav", clean, SR, subtype="FLOAT")
    mix = write_audio(tmp_path / "noisy.wav", noisy, SR, subtype="FLOAT")
    assert main(["evaluate", str(enh), "--mixture", str(mix), "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["reference"] is None
    for key in ("sig", "bak", "ovrl", "p808"):
        assert record[f"dnsmos_{key}"] == pytest.approx(scores["clean"][key], abs=1e-4)
        assert record[f"dnsmos_{key}_mixture"] == pytest.approx(scores["noisy"][key], abs=1e-4)
        assert record[f"dnsmos_{key}_i"] == pytest.approx(scores["clean"][key] - scores["noisy"][key], abs=1e-4)
    # reference metrics without a reference: a usage error naming the option
    assert main(["evaluate", str(enh), "--metrics", "si_sdr"]) == 2
    assert "--reference" in capsys.readouterr().err
