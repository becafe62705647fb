"""How much enrollment speech the dictionary denoisers need before they beat the noisy input.

The measurement behind ``min_seconds=3.0`` and the grey-zone warning below 10 s
(issue 19). For each speaker, the first ``d`` seconds of a 30 s enrollment
(``make_personalization_task``, seed 0) fit a model with default settings
except ``n_components`` (SemiSupervisedNMF only) and ``min_seconds=0``; the
model denoises 3 test utterances at 0 and 5 dB. ``--estimator USM`` fits the
universal model once on 10 s of each other speaker of the data set and
``personalize``s it with the enrollment, in the few-shot setting
(``mode="few-shot"``, the one a user enrolling a voice gets; ``--usm-mode
block`` only adds the block). Printed: SI-SDR improvement (mean,
worst) and the share of mixtures made worse than the input.

    python benchmarks/enrollment.py                  # SemiSupervisedNMF, 64 atoms (the default), ~1 min
    python benchmarks/enrollment.py --n-components 16
    python benchmarks/enrollment.py --estimator MLD  # also ExemplarNMF, USM
    python benchmarks/enrollment.py --estimator MLD --durations 1.5 2.5
"""

from __future__ import annotations

import argparse
import copy
import warnings

import numpy as np

import pse_nmf
from pse_nmf.metrics import si_sdr
from _common import DEFAULT_DATA, add_quiet_argument, check_data, progress

SPEAKERS = ["so762_0003", "so762_0053", "so762_0560", "so762_0736"]
DURATIONS = [0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--n-components", type=int, default=64)
    parser.add_argument("--estimator", default="SemiSupervisedNMF",
                        choices=["SemiSupervisedNMF", "MLD", "ExemplarNMF", "USM"])
    parser.add_argument("--usm-mode", default="few-shot", choices=["few-shot", "block"],
                        help="USM.personalize's mode (default few-shot)")
    parser.add_argument("--durations", type=float, nargs="+", default=DURATIONS,
                        help="seconds of enrollment to try (default: %(default)s)")
    add_quiet_argument(parser)
    args = parser.parse_args()
    data = check_data(args.data)
    warnings.simplefilter("ignore")  # grey-zone and convergence warnings: the point is to measure them
    rows = {d: [] for d in args.durations}
    universal = None
    if args.estimator == "USM":
        speech = pse_nmf.datasets.load_recordings(data / "speech")
        others = {spk: [np.concatenate(clips)[: 10 * 16000]] for spk, clips in speech.items() if spk not in SPEAKERS}
        universal = pse_nmf.USM(random_state=0).fit(others)
    for spk in progress(SPEAKERS, "speakers", quiet=args.quiet):
        task = pse_nmf.datasets.make_personalization_task(data / "speech", data / "noise", spk, enroll_seconds=30,
                                                 snrs=(0, 5), n_test=3, random_state=0)
        enroll = np.concatenate(task.enrollment)
        for d in args.durations:
            x = enroll[: int(d * 16000)]
            if args.estimator == "SemiSupervisedNMF":
                model = pse_nmf.SemiSupervisedNMF(n_components=args.n_components, min_seconds=0, random_state=0).fit(x)
            elif args.estimator == "USM":
                model = copy.deepcopy(universal).set_params(min_seconds=0).personalize(x, "target", mode=args.usm_mode)
            else:
                model = getattr(pse_nmf, args.estimator)(min_seconds=0, random_state=0).fit(x)
            for m in task.test:
                rows[d].append(si_sdr(model.denoise(m.mixture), m.speech) - si_sdr(m.mixture, m.speech))
    what = {"SemiSupervisedNMF": f"SemiSupervisedNMF(n_components={args.n_components})",
            "USM": f"USM (defaults, personalize mode={args.usm_mode!r})"}.get(args.estimator, f"{args.estimator} (defaults)")
    print(f"{what}, {len(SPEAKERS)} speakers x 6 mixtures")
    for d in args.durations:
        r = np.array(rows[d])
        print(f"{d:5.2f} s  SI-SDRi mean {r.mean():+6.2f} dB  worst {r.min():+6.2f}  worse than input {np.mean(r < 0):.0%}")


if __name__ == "__main__":
    main()
