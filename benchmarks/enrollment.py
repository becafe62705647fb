"""How much enrollment speech SemiSupervisedNMF needs before it beats the noisy input.

The measurement behind ``SemiSupervisedNMF(min_seconds=3.0)`` and the grey-zone
warning below 10 s (issue 19). For each speaker, the first ``d`` seconds of a
30 s enrollment (``make_personalization_task``, seed 0) fit a model with
default settings except ``n_components`` and ``min_seconds=0``; the model
denoises 3 test utterances at 0 and 5 dB. Printed: SI-SDR improvement (mean,
worst) and the share of mixtures made worse than the input.

    python benchmarks/enrollment.py                  # 64 atoms (the default), ~1 min
    python benchmarks/enrollment.py --n-components 16
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

import pse_nmf
from _common import DEFAULT_DATA, check_data

SPEAKERS = ["so762_0003", "so762_0053", "so762_0560", "so762_0736"]
DURATIONS = [0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--n-components", type=int, default=64)
    args = parser.parse_args()
    data = check_data(args.data)
    warnings.simplefilter("ignore")  # grey-zone and convergence warnings: the point is to measure them
    rows = {d: [] for d in DURATIONS}
    for spk in SPEAKERS:
        task = pse_nmf.make_personalization_task(data / "speech", data / "noise", spk, enroll_seconds=30,
                                                 snrs=(0, 5), n_test=3, random_state=0)
        enroll = np.concatenate(task.enrollment)
        for d in DURATIONS:
            model = pse_nmf.SemiSupervisedNMF(n_components=args.n_components, min_seconds=0, random_state=0)
            model.fit(enroll[: int(d * 16000)])
            for m in task.test:
                rows[d].append(pse_nmf.si_sdr(model.denoise(m.mixture), m.speech) - pse_nmf.si_sdr(m.mixture, m.speech))
    print(f"SemiSupervisedNMF(n_components={args.n_components}), {len(SPEAKERS)} speakers x 6 mixtures")
    for d in DURATIONS:
        r = np.array(rows[d])
        print(f"{d:5.2f} s  SI-SDRi mean {r.mean():+6.2f} dB  worst {r.min():+6.2f}  worse than input {np.mean(r < 0):.0%}")


if __name__ == "__main__":
    main()
