"""Write the model card (``<name>.json``) of a shipped pretrained model.

The card is made from the model file itself (its estimator, parameters, size
and cost, SHA-256), the ``<model>.training.json`` written by
``train_generalist.py`` (command, data, history, wall time) and, if given,
the ``summary.json`` of a ``generalist.py`` benchmark run (dev-set figures
beside RNNoise and the other baselines)::

    python benchmarks/model_card.py pse_nmf/neural/pretrained/generalist.npz \
        --benchmark benchmarks/results/generalist-<stamp>/summary.json

``tests/test_generalist.py`` checks that the card matches the file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

ARCHITECTURE = (
    "CompactEnhancer: causal band-GRU mask estimator. STFT 512 / hop 128 (32 ms Hann window, 8 ms hop) at "
    "16 kHz; the power spectrum is compressed to the 64 lowest bins (0-2 kHz, kept at full resolution) and "
    "32 ERB bands above (GTCRN's layout); log band powers relative to a causal running level (3 s time "
    "constant) -> causal Conv1d over 2 frames (96 -> 64, PReLU) -> GRU 64 -> 96 -> GRU 96 -> 64 -> linear "
    "64 -> 96 with a sigmoid: one gain per band, spread back to the 257 bins and applied to the complex STFT. "
    "Streamable frame by frame (module_.step); latency one STFT frame (32 ms)."
)

ARCHITECTURE_SNR = (
    "SNRPredictor: CompactEnhancer's front end and body with smaller layers and one output per frame. STFT "
    "512 / hop 128 at 16 kHz; 64 low bins + 32 ERB bands; log band powers relative to a causal running level "
    "-> causal Conv1d over 2 frames (96 -> 32, PReLU) -> GRU 32 -> 48 -> GRU 48 -> 32 -> linear 32 -> 1: the "
    "SNR in dB of the STFT frame (speech to noise energy over all bins), clipped to [-20, 30] dB. Causal."
)

ARCHITECTURE_EXTRACTOR = (
    "SpeakerExtractor: the generalist's mask network (" + ARCHITECTURE + ") conditioned on a speaker "
    "embedding by two FiLM layers (per-channel scale and shift of the convolution's and of the first GRU's "
    "outputs), and a speaker encoder that makes the embedding from the enrollment: the same log band features "
    "-> Conv1d over 3 frames (96 -> 64, PReLU) -> GRU 64 -> 64 -> attention pooling over the frames -> linear "
    "64 -> 64, unit norm. The encoder runs once per enrollment; per frame the cost is the generalist's."
)

TRAINING_DATA = {
    "speech": "../shared/pretrain: 116 speakers of speechocean762 (49 adults, 67 children; 58 M / 58 F), "
              "2,320 utterances, 2.73 h, 16 kHz, none of them in the developer set ../shared/data",
    "noise": "even-indexed clips of each of the 17 noise types of ../shared/data/noise (141 clips): ESC-10 "
             "(10 types), Speech Commands background noise (4), Berlin Noise (3); the odd-indexed clips are the "
             "benchmark's test noise and were never used; plus Gaussian noise of random spectral slope in 10 % "
             "of the examples",
    "validation": "2 utterances of each of the 24 developer-set speakers that are not benchmark targets, mixed "
                  "once at -5 / 0 / 5 dB with the training noise (early stopping on their mean SI-SDR)",
    "mixing": "on the fly: every epoch a new random 3 s segment of every utterance, a random noise excerpt, "
              "SNR uniform in [-5, 15] dB (SNRPredictor: [-10, 20] dB), mixture level uniform in [-40, -15] dBFS",
}

LICENCE = {
    "weights": "BSD-3-Clause, like the library",
    "speech": "speechocean762 (Zhang et al., Interspeech 2021), Apache-2.0, jimbozhang/speechocean762@613968e",
    "noise": "ESC-10 (Piczak, ACM MM 2015) CC BY 3.0, clips CC0-1.0 or CC-BY-3.0 (per clip: "
             "../shared/data/ATTRIBUTION.csv); Speech Commands background noise (Warden 2018) CC BY 4.0; "
             "Berlin Noise by Thomas Rosen, CC BY 4.0",
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def experts_params(model):
    """The mixture's own parameters (the specialists are described by name and snr_range)."""
    params = {k: v for k, v in model.get_params(deep=False).items() if k not in ("experts", "embedding")}
    return json.loads(json.dumps(params, default=list))


def experts_card(args, model, training, c):
    """The card of a SparseMixtureOfExperts (``benchmarks/train_experts.py``)."""
    members = model._members()
    card = {
        "name": args.name or args.model.stem,
        "file": args.model.name,
        "sha256": sha256(args.model),
        "estimator": type(model).__name__,
        "params": experts_params(model),
        "specialists": {name: {"snr_range": list(e.snr_range)} for name, e in members},
        "specialist_training": training.get("specialists"),
        "architecture": (
            f"SparseMixtureOfExperts, partition {model.partition!r}: {len(members)} specialists, each the "
            "architecture of the pretrained generalist (" + ARCHITECTURE + ") and a gate (a GRU of "
            f"{model.gate_hidden} units on the specialists' log band features, a linear layer to one logit per "
            f"specialist, averaged over segments of {model.segment_seconds} s); at test time only the argmax "
            "specialist of each segment runs, the GRU states handed on at a change."),
        "parameters": c["parameters"],
        "macs_per_frame": c["macs_per_frame"],
        "frames_per_second": c["frames_per_second"],
        "macs_per_second": c["macs_per_second"],
        "sample_rate": model.sr,
        "training_data": dict(TRAINING_DATA, specialists=(
            f"each specialist: the pretrained generalist fine-tuned on its part ({model.partition}) of the same "
            "data for a few epochs (benchmarks/train_experts.py specialists), early stopping on validation "
            "mixtures of its part"), gate=(
            "gate stage (specialists frozen) and joint stage (the softmax temperature annealed from "
            f"{model.temperature_start} to {model.temperature_end}) on the same data; validation on the hard "
            "(test-time) path")),
        "licence": LICENCE,
        "training_command": training["command"],
        "training": {
            "specialist_epoch_seconds": training.get("specialist_epoch_seconds"),
            "gate_and_joint_epoch_seconds": training.get("gate_epoch_seconds_total"),
            "stages": [{k: h[k] for k in ("stage", "epoch", "train_loss", "valid_loss", "dur")}
                       for h in training["history"]],
            "machine": training.get("machine"), "torch": training.get("torch"),
        },
        "dev_results": {},
    }
    if args.benchmark is not None:
        bench = json.loads(args.benchmark.read_text())
        card["dev_results"]["benchmark"] = {
            "script": "benchmarks/selection.py",
            "protocol": {k: bench["protocol"][k] for k in ("targets", "n_test", "snrs_db", "seed")},
            "methods": bench["methods"], "paired": bench["paired"],
        }
    return card


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("--training", type=Path, default=None, help="default: <model>.training.json")
    p.add_argument("--benchmark", type=Path, default=None, help="summary.json of a generalist.py run")
    p.add_argument("--name", default=None, help="default: the model file's stem")
    p.add_argument("--out", type=Path, default=None, help="default: <model>.json")
    args = p.parse_args(argv)

    import pse_nmf
    from pse_nmf.neural import complexity

    model = pse_nmf.load(args.model)
    training = json.loads((args.training or args.model.with_suffix(".training.json")).read_text())
    c = complexity(model)
    if type(model).__name__ == "SparseMixtureOfExperts":
        card = experts_card(args, model, training, c)
        out = args.out or args.model.with_suffix(".json")
        out.write_text(json.dumps(card, indent=2) + "\n")
        print(f"wrote {out}")
        return
    snr = type(model).__name__ == "SNRPredictor"
    extractor = type(model).__name__ == "SpeakerExtractor"
    card = {
        "name": args.name or args.model.stem,
        "file": args.model.name,
        "sha256": sha256(args.model),
        "estimator": type(model).__name__,
        "params": json.loads(json.dumps(model.get_params(), default=list)),
        "architecture": ARCHITECTURE_SNR if snr else ARCHITECTURE_EXTRACTOR if extractor else ARCHITECTURE,
        "parameters": c["parameters"],
        "macs_per_frame": c["macs_per_frame"],
        "frames_per_second": c["frames_per_second"],
        "macs_per_second": c["macs_per_second"],
        "sample_rate": model.sr,
        "training_data": dict(TRAINING_DATA, augmentation=(
            f"{model.noise_augment:.0%} of the recorded noise excerpts augmented (speed and pitch by up to 0.4 "
            "octave, spectral tilt up to 3 dB/octave and three bumps up to 9 dB, reversal half of the time, a "
            "second excerpt 0-10 dB below in 30 %)" if getattr(model, "noise_augment", 0) else "none")),
        "licence": LICENCE,
        "training_command": training["command"],
        "training": {
            "epochs": training["epochs"], "best_epoch": training["best_epoch"],
            "epoch_seconds_total": training["epoch_seconds_total"],
            "loss": "MSE of the frame SNR in units of 10 dB" if snr else model.loss, "optimizer": "Adam, cosine schedule after a 2-epoch warm-up, gradient norm clip 5",
            "threads": model.n_threads, "machine": training.get("machine"), "torch": training.get("torch"),
            ("valid_rmse_db_per_epoch" if snr else "valid_si_sdr_db_per_epoch"): [
                round(-h["valid_loss"] if snr else h["valid_loss"], 3) for h in training["history"]],
        },
        "dev_results": ({"validation_rmse_db": training["best_valid_rmse_db"]} if snr
                        else {"validation_si_sdr_db": training["best_valid_si_sdr_db"]}),
    }
    if extractor:
        card["training_data"].update(
            validation="2 utterances of each of the 24 developer-set speakers that are not benchmark targets, each "
                       "with the next of these speakers at 0 dB and training noise at 5 dB, enrolled with the "
                       "speaker's other utterance (early stopping on their mean SI-SDR)",
            mixing="on the fly: every epoch a new 3 s segment of every utterance as the target, a 3 s enrollment "
                   "from another utterance of the same speaker; in 75 % of the examples an interfering talker "
                   "(another training speaker) at an SIR uniform in [-5, 5] dB with noise at 0 to 15 dB SNR, "
                   "otherwise noise alone at -5 to 15 dB; mixture level uniform in [-40, -15] dBFS",
            init="the mask network starts from pretrained('generalist'); encoder and FiLM layers start anew (FiLM "
                 "at zero: the untrained extractor is the generalist)")
        card["enrollment"] = "none shipped: enroll(clean_speech) or 'pse-nmf personalize --method extract'"
    if args.benchmark is not None and extractor:
        bench = json.loads(args.benchmark.read_text())
        card["dev_results"]["benchmark"] = {
            "script": "benchmarks/extraction.py", "protocol": bench["protocol"], "targets": bench["targets"],
            "summary": bench["summary"],
        }
    elif args.benchmark is not None:
        bench = json.loads(args.benchmark.read_text())
        card["dev_results"]["benchmark"] = {
            "script": "benchmarks/generalist.py",
            "protocol": {k: bench["protocol"][k] for k in ("targets", "n_test", "snrs_db", "seed")},
            "methods": {name: {k: v for k, v in m.items() if k in (
                "n", "si_sdri", "si_sdri_ci95", "pesq", "estoi", "parameters", "mmacs_per_second", "rtf_10s",
                "si_sdri@-5", "si_sdri@0", "si_sdri@5")} for name, m in bench["methods"].items()},
            "checks": bench["checks"],
        }
    out = args.out or args.model.with_suffix(".json")
    out.write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
