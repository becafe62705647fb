"""Train the shipped pretrained generalist (``pse_nmf.neural.pretrained("generalist")``).

Data (nothing of the benchmark's test set is seen):

* speech: ``../shared/pretrain/speech`` (116 speakers, 2.7 h, none of them in
  ``../shared/data``);
* noise: the even-indexed clips of every type of ``../shared/data/noise``
  (the benchmarks' training half; ``benchmarks/generalist.py`` tests on the
  odd-indexed clips);
* validation (early stopping): two utterances of each ``../shared/data``
  speaker that is *not* one of the benchmark's 8 target speakers (seed 0),
  mixed once with the training noise at -5, 0 and 5 dB.

Run (about an hour on one core; ``--resume`` continues an interrupted run)::

    python benchmarks/train_generalist.py --out pse_nmf/neural/pretrained/generalist.npz \
        --checkpoint benchmarks/results/generalist-ckpt.npz --resume

It writes the model file and, beside it, ``<name>.training.json`` (the
command, the data, the per-epoch history and the wall time) that the model
card is made from.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA, check_data, pick_targets, read_speakers  # noqa: E402

import pse_nmf  # noqa: E402

DEFAULT_PRETRAIN = DEFAULT_DATA.parent / "pretrain"


def training_data(data, pretrain, n_targets=8, seed=0, valid_utts=2):
    """(speech folder, training noise, validation speech, validation noise) of the protocol above."""
    clips = pse_nmf.datasets.list_recordings(data / "noise")
    train_noise = [c for k in sorted(clips) for c in clips[k][0::2]]
    targets, others = pick_targets(read_speakers(data), n_targets, seed)
    speech = pse_nmf.datasets.list_recordings(data / "speech")
    valid_speech = [f for spk in others for f in speech[spk][:valid_utts]]
    return pretrain / "speech", train_noise, valid_speech, targets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, type=Path, help="developer set (noise, validation)")
    parser.add_argument("--pretrain", default=DEFAULT_PRETRAIN, type=Path, help="pretraining speech set")
    parser.add_argument("--out", required=True, type=Path, help="model file to write (.npz)")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--loss", default="si_sdr_estoi", choices=("si_sdr", "compressed", "si_sdr_estoi"))
    parser.add_argument("--noise-augment", type=float, default=0.5,
                        help="share of noise excerpts augmented (speed, EQ, reversal, a second excerpt)")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from pse_nmf.neural import CompactEnhancer

    data = check_data(args.data)
    speech, train_noise, valid_speech, targets = training_data(data, args.pretrain)
    print(f"speech {speech}; {len(train_noise)} training noise clips; {len(valid_speech)} validation "
          f"utterances (benchmark targets excluded: {', '.join(targets)})", flush=True)
    model = CompactEnhancer(loss=args.loss, noise_augment=args.noise_augment, max_epochs=args.max_epochs, patience=args.patience,
                            n_threads=args.threads, random_state=args.seed, verbose=1)
    t0 = time.perf_counter()
    model.fit(speech, train_noise, validation=(valid_speech, train_noise), checkpoint=args.checkpoint,
              resume=args.resume)
    seconds = time.perf_counter() - t0
    model.set_params(verbose=0)  # the shipped model is quiet when a user fine-tunes it
    model.save(args.out, overwrite=True)
    info = {
        "command": "python benchmarks/train_generalist.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "wall_seconds_this_run": seconds,
        "epoch_seconds_total": sum(h["dur"] for h in model.history_),
        "epochs": model.n_epochs_, "best_epoch": model.best_epoch_, "best_valid_si_sdr_db": model.best_loss_,
        "history": model.history_, "params": model.get_params(),
        "speech": str(speech), "n_train_noise_clips": len(train_noise), "n_valid_utterances": len(valid_speech),
        "excluded_targets": targets, "machine": platform.platform(), "torch": __import__("torch").__version__,
    }
    out_info = args.out.with_suffix(".training.json")
    out_info.write_text(json.dumps(info, indent=2, default=str) + "\n")
    print(f"wrote {args.out} and {out_info}: best validation SI-SDR {model.best_loss_:.2f} dB at epoch "
          f"{model.best_epoch_} of {model.n_epochs_}, {seconds / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
