"""Train the shipped target speaker extractor (``pse_nmf.neural.pretrained("extractor")``).

Data (nothing of the benchmark's test set is seen), as ``train_generalist.py``:

* speech: ``../shared/pretrain/speech`` (116 speakers; targets, enrollments
  and interfering talkers all drawn from them);
* noise: the even-indexed clips of every type of ``../shared/data/noise``;
* validation (early stopping): two utterances of each ``../shared/data``
  speaker that is *not* one of the benchmark's 8 target speakers, each with
  another of these speakers at 0 dB and training noise at 5 dB, enrolled
  with the speaker's other validation utterance.

The mask network starts from the shipped generalist (``init=pretrained()``);
the speaker encoder and the FiLM layers are trained with it.

Run (about an hour on one core; ``--resume`` continues an interrupted run)::

    python benchmarks/train_extractor.py --out runs/extractor.npz \
        --checkpoint runs/extractor-ckpt.npz --resume

It writes the model file and ``<name>.training.json`` beside it (command,
data, per-epoch history, wall time), from which ``model_card.py`` makes the
card.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA, check_data  # noqa: E402
from train_generalist import DEFAULT_PRETRAIN  # noqa: E402
from train_generalist import training_data as generalist_data  # noqa: E402

import pse_nmf  # noqa: E402


def training_data(data, pretrain, n_targets=8, seed=0, valid_utts=2):
    """The generalist's data (``train_generalist.training_data``), its validation files grouped by speaker.

    Returns (speech folder, training noise, validation speech as speaker -> files, excluded targets).
    """
    speech, train_noise, valid_files, targets = generalist_data(data, pretrain, n_targets, seed, valid_utts)
    valid_speech = {}
    for f in valid_files:  # <speaker>/<utterance>: the talkers of the validation mixtures are other speakers
        valid_speech.setdefault(Path(f).parent.name, []).append(f)
    return speech, train_noise, valid_speech, targets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, type=Path, help="developer set (noise, validation)")
    parser.add_argument("--pretrain", default=DEFAULT_PRETRAIN, type=Path, help="pretraining speech set")
    parser.add_argument("--out", required=True, type=Path, help="model file to write (.npz)")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--max-epochs", type=int, default=80)
    parser.add_argument("--patience", type=int, default=15)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--branch-hidden", type=int, default=0, help="SpeakerExtractor's branch_hidden")
    parser.add_argument("--speaker-augment", type=float, default=0.0, help="SpeakerExtractor's speaker_augment")
    parser.add_argument("--warm-start", type=Path, default=None, metavar="MODEL",
                        help="continue from this SpeakerExtractor model file (its layout kept) instead of starting "
                        "the mask network from the shipped generalist")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from pse_nmf.neural import SpeakerExtractor, pretrained

    data = check_data(args.data)
    speech, train_noise, valid_speech, targets = training_data(data, args.pretrain)
    print(f"speech {speech}; {len(train_noise)} training noise clips; {len(valid_speech)} validation speakers "
          f"(benchmark targets excluded: {', '.join(targets)})", flush=True)
    settings = dict(speaker_augment=args.speaker_augment, max_epochs=args.max_epochs, patience=args.patience,
                    learning_rate=args.learning_rate, n_threads=args.threads, random_state=args.seed, verbose=1)
    if args.warm_start is not None:
        model = pse_nmf.load(args.warm_start)
        if not isinstance(model, SpeakerExtractor):
            raise SystemExit(f"--warm-start {args.warm_start}: a {type(model).__name__}, not a SpeakerExtractor")
        model.set_params(warm_start=True, **settings)
        init = None
    else:
        model = SpeakerExtractor(branch_hidden=args.branch_hidden, **settings)
        init = pretrained("generalist")
    t0 = time.perf_counter()
    model.fit(speech, train_noise, init=init, validation=(valid_speech, train_noise),
              checkpoint=args.checkpoint, resume=args.resume)
    seconds = time.perf_counter() - t0
    model.set_params(verbose=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out, overwrite=True)
    info = {
        "command": "python benchmarks/train_extractor.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "wall_seconds_this_run": seconds,
        "epoch_seconds_total": sum(h["dur"] for h in model.history_),
        "epochs": model.n_epochs_, "best_epoch": model.best_epoch_, "best_valid_si_sdr_db": model.best_loss_,
        "history": model.history_, "params": model.get_params(),
        "init": str(args.warm_start) if args.warm_start else "pretrained('generalist')",
        "speech": str(speech), "n_train_noise_clips": len(train_noise),
        "n_valid_utterances": sum(len(v) for v in valid_speech.values()),
        "excluded_targets": targets, "machine": platform.platform(), "torch": __import__("torch").__version__,
    }
    out_info = args.out.with_suffix(".training.json")
    out_info.write_text(json.dumps(info, indent=2, default=str) + "\n")
    print(f"wrote {args.out} and {out_info}: best validation SI-SDR {model.best_loss_:.2f} dB at epoch "
          f"{model.best_epoch_} of {model.n_epochs_}, {seconds / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
