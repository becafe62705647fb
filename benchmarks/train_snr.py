"""Train the shipped frame-SNR predictor (``pse_nmf.neural.pretrained("snr")``) for data purification.

The data of ``benchmarks/train_generalist.py`` (nothing of the benchmark's test set is seen): speech
``../shared/pretrain/speech`` (116 speakers), the even-indexed noise clips of ``../shared/data/noise``,
validation on two utterances of each non-target developer-set speaker.

Run (about 15 minutes on one core; ``--resume`` continues an interrupted run)::

    python benchmarks/train_snr.py --out runs/snr.npz --checkpoint runs/snr-ckpt.npz --resume

It writes the model file and ``<name>.training.json`` (command, history, wall time) for the model card.
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
from train_generalist import DEFAULT_PRETRAIN, training_data  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, type=Path)
    parser.add_argument("--pretrain", default=DEFAULT_PRETRAIN, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from pse_nmf.neural import SNRPredictor

    data = check_data(args.data)
    speech, train_noise, valid_speech, targets = training_data(data, args.pretrain)
    print(f"speech {speech}; {len(train_noise)} noise clips; {len(valid_speech)} validation utterances", flush=True)
    model = SNRPredictor(max_epochs=args.max_epochs, patience=args.patience, batch_size=args.batch_size,
                         n_threads=args.threads, random_state=args.seed, verbose=1)
    t0 = time.perf_counter()
    model.fit(speech, train_noise, validation=(valid_speech, train_noise), checkpoint=args.checkpoint,
              resume=args.resume)
    seconds = time.perf_counter() - t0
    model.set_params(verbose=0)
    model.save(args.out, overwrite=True)
    info = {
        "command": "python benchmarks/train_snr.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "wall_seconds_this_run": seconds,
        "epoch_seconds_total": sum(h["dur"] for h in model.history_),
        "epochs": model.n_epochs_, "best_epoch": model.best_epoch_,
        "best_valid_rmse_db": -model.best_loss_, "history": model.history_, "params": model.get_params(),
        "speech": str(speech), "n_train_noise_clips": len(train_noise), "n_valid_utterances": len(valid_speech),
        "excluded_targets": targets, "machine": platform.platform(), "torch": __import__("torch").__version__,
    }
    out_info = args.out.with_suffix(".training.json")
    out_info.write_text(json.dumps(info, indent=2, default=str) + "\n")
    print(f"wrote {args.out}: validation RMS error {-model.best_loss_:.2f} dB at epoch {model.best_epoch_}, "
          f"{seconds / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
