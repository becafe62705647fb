"""Train the specialists and the gate of ``pse_nmf.neural.pretrained("experts")``.

Stage 1 (``specialists``): each specialist is the shipped generalist
(``pretrained("generalist")``, a ``CompactEnhancer``) fine-tuned on one
partition of the training problem for a few epochs with the generalist's own
``fit`` (the training engine's ``fit_loop`` and ``DynamicMixer``):

* ``--partition snr``: input-SNR bands, the generalist's range [-5, 15] dB cut
  in equal thirds;
* ``--partition gender``: the male / female speakers of ``../shared/pretrain``
  (``speakers.csv``);
* ``--partition speaker``: groups of speakers found by k-means on the mean
  ``SpeakerEmbedding`` of each speaker (``--embedding``, trained by
  ``embedding``).

Stage 0 for ``speaker`` (``embedding``): the Siamese ``SpeakerEmbedding``
trained on noisy pairs of the pretraining speakers.

Stages 2 and 3 (``gate``): a ``SparseMixtureOfExperts`` is built from the
specialist files; its gate is trained with the specialists frozen, then
everything is fine-tuned jointly with the softmax temperature annealed
towards a hard choice (``SparseMixtureOfExperts.fit``).

Data as for the generalist (``train_generalist.py``): speech of
``../shared/pretrain``, the even-indexed noise clips of ``../shared/data``;
validation (gate stage) on two utterances of each non-target developer-set
speaker. Nothing of the benchmark's test set is seen. One torch thread.

Commands that built the shipped model are in ``docs/selection.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA, check_data, read_speakers  # noqa: E402
from train_generalist import DEFAULT_PRETRAIN, training_data  # noqa: E402

import numpy as np  # noqa: E402

import pse_nmf  # noqa: E402

SNR_EDGES = (-5.0, 5.0 / 3.0, 25.0 / 3.0, 15.0)


def partitions(kind, pretrain, embedding=None, n_groups=3, seed=0):
    """The specialists' training problems: list of (name, speech, snr_range)."""
    speech_dir = pretrain / "speech"
    if kind == "snr":
        return [(f"snr{k}", speech_dir, (SNR_EDGES[k], SNR_EDGES[k + 1])) for k in range(len(SNR_EDGES) - 1)]
    recordings = pse_nmf.datasets.list_recordings(speech_dir)
    if kind == "gender":
        with open(pretrain / "speakers.csv", newline="") as f:
            gender = {row["speaker_id"]: row["gender"] for row in csv.DictReader(f)}
        return [(f"gender{g}", {s: recordings[s] for s in sorted(recordings) if gender[s] == g}, (-5.0, 15.0))
                for g in ("F", "M")]
    if kind == "speaker":
        from pse_nmf._persistence import load_model

        emb = load_model(embedding)
        labels = emb.cluster_speakers(recordings, n_groups, random_state=seed)
        print("speaker groups:", {k: sum(v == k for v in labels.values()) for k in range(n_groups)}, flush=True)
        return [(f"speaker{k}", {s: recordings[s] for s in sorted(recordings) if labels[s] == k}, (-5.0, 15.0))
                for k in range(n_groups)]
    raise ValueError(f"unknown partition {kind!r}")


def specialist_validation(kind, data, pretrain, embedding, n_groups, seed):
    """Validation of each specialist inside its sub-problem: list of (speech files, SNRs).

    Two utterances of each non-target developer-set speaker (the generalist's validation speakers); for
    ``snr`` all of them at the band's low end, centre and high end; for ``gender`` the speakers of that
    gender; for ``speaker`` the speakers whose mean embedding is nearest to the group's centroid.
    """
    _, _, valid_speech, targets = training_data(data, pretrain)
    by_speaker = {}
    for f in valid_speech:
        by_speaker.setdefault(Path(f).parent.name, []).append(f)
    if kind == "snr":
        return [(valid_speech, (lo, 0.5 * (lo + hi), hi)) for lo, hi in zip(SNR_EDGES[:-1], SNR_EDGES[1:])]
    if kind == "gender":
        gender = {s: row["gender"] for s, row in read_speakers(data).items()}
        return [([f for s, fs in by_speaker.items() if gender[s] == g for f in fs], (-5.0, 0.0, 5.0))
                for g in ("F", "M")]
    from pse_nmf._persistence import load_model

    emb = load_model(embedding)
    emb.cluster_speakers(pse_nmf.datasets.list_recordings(pretrain / "speech"), n_groups, random_state=seed)
    out = [([], (-5.0, 0.0, 5.0)) for _ in range(n_groups)]
    for s, fs in sorted(by_speaker.items()):
        e = emb.transform([pse_nmf.audio.read_audio(f, sr=emb.sr)[0] for f in fs]).mean(axis=0)
        out[int(np.argmax(emb.centroids_ @ e))][0].extend(fs)
    print("validation speakers per group:", [len(v) // 2 for v, _ in out], flush=True)
    return out


def train_specialists(args):
    from sklearn.utils import check_random_state

    from pse_nmf.neural import pretrained
    from pse_nmf.neural._base import _seed
    from pse_nmf.neural._engine import fixed_mixtures

    data = check_data(args.data)
    _, train_noise, _, _ = training_data(data, args.pretrain)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    parts = partitions(args.partition, args.pretrain, args.embedding, args.groups, args.seed)
    valids = specialist_validation(args.partition, data, args.pretrain, args.embedding, args.groups, args.seed)
    for k, ((name, speech, snr_range), (valid_speech, valid_snrs)) in enumerate(zip(parts, valids)):
        out = args.out_dir / f"{name}.npz"
        if out.exists():
            print(f"{out} exists, skipped", flush=True)
            continue
        model = pretrained("generalist")  # warm_start=True: fine-tuning
        model.set_params(snr_range=snr_range, max_epochs=args.epochs, patience=args.epochs,
                         learning_rate=args.learning_rate, n_threads=args.threads, random_state=args.seed + k,
                         verbose=1)
        t0 = time.perf_counter()
        print(f"{name}: snr_range {snr_range}, {len(speech) if isinstance(speech, dict) else 116} speakers, "
              f"validation {len(valid_speech)} utterances at {valid_snrs} dB", flush=True)
        model.fit(speech, train_noise, validation=(valid_speech, train_noise), validation_snrs=valid_snrs,
                  checkpoint=args.out_dir / f"{name}.ckpt.npz", resume=True)
        seconds = time.perf_counter() - t0
        # the generalist itself on the same validation mixtures (the seeds that fit drew from random_state):
        # recorded beside the specialist's best (docs/selection.md); the specialist is kept either way, so that
        # the benchmark measures what selecting among the specialists brings
        base = pretrained("generalist")
        rng = check_random_state(args.seed + k)
        _seed(rng)
        valid = fixed_mixtures(base._recording_list(valid_speech, None, False, "validation", base.n_fft),
                               base._recording_list(train_noise, None, False, "noise", 1), valid_snrs, _seed(rng))
        base_score = base._validation_score(base.module_, valid)
        beats = bool(model.best_loss_ > base_score)
        print(f"{name}: best validation {model.best_loss_:.3f} dB at epoch {model.best_epoch_}, the generalist "
              f"{base_score:.3f} dB", flush=True)
        model.set_params(verbose=0)
        model.save(out, overwrite=True)
        n_speakers = len(speech) if isinstance(speech, dict) else None
        info = {"command": "python benchmarks/train_experts.py " + " ".join(sys.argv[1:]), "name": name,
                "generalist_valid_si_sdr_db": base_score, "beats_generalist": beats,
                "snr_range": snr_range, "validation_snrs": valid_snrs, "n_valid_utterances": len(valid_speech),
                "best_epoch": model.best_epoch_, "best_valid_si_sdr_db": model.best_loss_, "n_speakers": n_speakers, "wall_seconds_this_run": seconds,
                "epoch_seconds_total": sum(h["dur"] for h in model.history_), "history": model.history_,
                "machine": platform.platform()}
        out.with_suffix(".training.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        print(f"wrote {out}: {info['epoch_seconds_total'] / 60:.1f} min", flush=True)


def train_embedding(args):
    from pse_nmf.neural import SpeakerEmbedding

    data = check_data(args.data)
    _, train_noise, _, targets = training_data(data, args.pretrain)
    dev = pse_nmf.datasets.list_recordings(data / "speech")
    valid = {s: dev[s][:4] for s in sorted(dev) if s not in targets}  # the non-target developer-set speakers
    model = SpeakerEmbedding(max_epochs=args.epochs, n_threads=args.threads, random_state=args.seed, verbose=1)
    t0 = time.perf_counter()
    model.fit(args.pretrain / "speech", train_noise, validation=valid, checkpoint=args.out.with_suffix(".ckpt.npz"),
              resume=True)
    seconds = time.perf_counter() - t0
    model.set_params(verbose=0)
    model.save(args.out, overwrite=True)
    info = {"command": "python benchmarks/train_experts.py " + " ".join(sys.argv[1:]),
            "wall_seconds_this_run": seconds, "epoch_seconds_total": sum(h["dur"] for h in model.history_),
            "history": model.history_, "machine": platform.platform()}
    args.out.with_suffix(".training.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    print(f"wrote {args.out}: {seconds / 60:.1f} min", flush=True)


def train_gate(args):
    from pse_nmf._persistence import load_model
    from pse_nmf.neural import SparseMixtureOfExperts

    data = check_data(args.data)
    speech, train_noise, valid_speech, _ = training_data(data, args.pretrain)
    if args.utterances:  # the first N utterances of every speaker: shorter epochs for the joint stage
        speech = {s: files[: args.utterances] for s, files in sorted(pse_nmf.datasets.list_recordings(speech).items())}
    names = [n for n, _, _ in partitions(args.partition, args.pretrain, args.embedding, args.groups)]
    experts = [(n, load_model(args.out_dir / f"{n}.npz")) for n in names]
    kwargs = {}
    if args.partition == "speaker":  # the groups of the specialists' training (k-means is seeded)
        emb = load_model(args.embedding)
        emb.cluster_speakers(pse_nmf.datasets.list_recordings(args.pretrain / "speech"), args.groups, random_state=args.seed)
        kwargs["embedding"] = emb
    # the speaker gate chooses once per input (an embedding of 1 s of noisy speech is unreliable; the paper
    # selects per utterance)
    kwargs["segment_seconds"] = None if args.partition == "speaker" else 1.0
    model = SparseMixtureOfExperts(experts, partition=args.partition, gate_epochs=args.gate_epochs,
                                   joint_epochs=args.joint_epochs, n_threads=args.threads, random_state=args.seed,
                                   verbose=1, **kwargs)
    t0 = time.perf_counter()
    model.fit(speech, train_noise, validation=(valid_speech, train_noise),
              checkpoint=args.out.with_suffix(".ckpt.npz"), resume=True)
    seconds = time.perf_counter() - t0
    model.set_params(verbose=0)
    model.save(args.out, overwrite=True)
    spec_seconds, specialists = 0.0, {}
    for n in names:
        info_path = args.out_dir / f"{n}.training.json"
        if info_path.exists():
            spec = json.loads(info_path.read_text())
            spec_seconds += spec["epoch_seconds_total"]
            specialists[n] = {k: spec.get(k) for k in ("command", "snr_range", "validation_snrs", "n_speakers",
                                                       "best_epoch", "best_valid_si_sdr_db",
                                                       "generalist_valid_si_sdr_db", "epoch_seconds_total")}
            specialists[n]["valid_si_sdr_db_per_epoch"] = [h["valid_loss"] for h in spec["history"]]
    info = {"command": "python benchmarks/train_experts.py " + " ".join(sys.argv[1:]),
            "wall_seconds_this_run": seconds, "specialist_epoch_seconds": spec_seconds, "specialists": specialists,
            "gate_epoch_seconds_total": sum(h["dur"] for h in model.history_), "history": model.history_,
            "machine": platform.platform(), "torch": __import__("torch").__version__}
    args.out.with_suffix(".training.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    print(f"wrote {args.out}: gate and joint stages {seconds / 60:.1f} min", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("specialists", "embedding", "gate"))
    parser.add_argument("--partition", default="snr", choices=("snr", "gender", "speaker"))
    parser.add_argument("--data", default=DEFAULT_DATA, type=Path)
    parser.add_argument("--pretrain", default=DEFAULT_PRETRAIN, type=Path)
    parser.add_argument("--out-dir", default=Path("runs/experts"), type=Path, help="specialist files")
    parser.add_argument("--out", type=Path, default=None, help="model file of the embedding or gate stage")
    parser.add_argument("--embedding", type=Path, default=None, help="SpeakerEmbedding file (speaker partition)")
    parser.add_argument("--groups", type=int, default=3, help="speaker groups (speaker partition)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--gate-epochs", type=int, default=3)
    parser.add_argument("--joint-epochs", type=int, default=3)
    parser.add_argument("--utterances", type=int, default=0,
                        help="gate stage: utterances per speaker per epoch (0: all 20)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.stage in ("embedding", "gate") and args.out is None:
        parser.error(f"{args.stage} needs --out")
    {"specialists": train_specialists, "embedding": train_embedding, "gate": train_gate}[args.stage](args)


if __name__ == "__main__":
    main()
