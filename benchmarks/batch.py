"""Throughput of ``pse-nmf denoise --jobs N`` against the serial run, and identical outputs.

On the developer set (../shared/data): a personal SemiSupervisedNMF is fitted
on 30 s of one speaker; ``--files`` noisy files (default 40) of about
``--seconds`` each are made from that speaker's other utterances and the dev
noise clips at 0 dB. Then the command line is run as a user runs it, in a fresh
process each time (start-up, worker start-up and imports included):

* ``pse-nmf denoise -m model.npz FILES -o serial/`` (``--jobs 1``),
* ``pse-nmf denoise ... --jobs N -o parallel/``,
* optionally (``--dask``) the same files on a local Dask cluster of N worker
  processes, through ``--scheduler tcp://127.0.0.1:PORT``;

each ``--repeats`` times (the best wall time counts, the machine being
shared). Throughput is seconds of audio per wall second; the outputs of
every run must equal the serial ones sample for sample. The load average
before and after is printed, since other processes on a shared machine take
cores from the parallel run.

Run: python benchmarks/batch.py [--files 40] [--seconds 8] [--jobs 2] [--repeats 2] [--dask]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DEFAULT_DATA, add_quiet_argument, check_data, format_machine_info, machine_info, progress, take_seconds,
)

SR = 16000


def make_corpus(data, folder, n_files, seconds, seed, quiet=False):
    from pse_nmf import SemiSupervisedNMF
    from pse_nmf.audio import read_audio, write_audio
    from pse_nmf.datasets import list_recordings, mix_at_snr

    speakers = sorted(p.name for p in (data / "speech").iterdir() if p.is_dir())
    speaker = speakers[0]
    enrollment = take_seconds(data / "speech", speaker, 30, seed)
    model = SemiSupervisedNMF(random_state=0).fit(enrollment)
    model.save(folder / "model.npz")
    utterances = [read_audio(p)[0] for p in list_recordings(data / "speech")[speaker]]
    noise_files = [f for files in list_recordings(data / "noise").values() for f in files]
    rng = np.random.default_rng(seed)
    noisy = folder / "noisy"
    noisy.mkdir()
    files = []
    for i in progress(range(n_files), "mixtures", quiet=quiet):
        parts, total = [], 0
        while total < seconds * SR:
            u = utterances[rng.integers(len(utterances))]
            parts.append(u)
            total += u.size
        speech = np.concatenate(parts)[: int(seconds * SR)]
        noise = read_audio(noise_files[rng.integers(len(noise_files))])[0]
        x, _ = mix_at_snr(speech, noise, 0.0, random_state=int(rng.integers(2**31)))
        files.append(write_audio(noisy / f"noisy_{i:03d}.wav", 0.5 * x / max(np.abs(x).max(), 1e-9), SR))  # peak 0.5
    return folder / "model.npz", files


def run_cli(model, files, out, extra):
    cmd = [sys.executable, "-m", "pse_nmf", "denoise", "-m", str(model), "-o", str(out), "--quiet", *extra,
           *map(str, files)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:8])} ... failed:\n{proc.stderr}")
    return elapsed


def same_outputs(a, b, files):
    for f in files:
        name = f"{f.stem}_enhanced.wav"
        if not np.array_equal(sf.read(str(a / name), dtype="int16")[0], sf.read(str(b / name), dtype="int16")[0]):
            return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each noisy file")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dask", action="store_true", help="also run on a local Dask cluster (--scheduler)")
    ap.add_argument("--seed", type=int, default=0)
    add_quiet_argument(ap)
    args = ap.parse_args()
    data = check_data(args.data)
    print(format_machine_info(machine_info()))
    with tempfile.TemporaryDirectory(prefix="pse_nmf_batch_") as tmp:
        tmp = Path(tmp)
        model, files = make_corpus(data, tmp, args.files, args.seconds, args.seed, args.quiet)
        audio = sum(sf.info(str(f)).duration for f in files)
        print(f"{len(files)} files, {audio:.0f} s of audio; load average before: {os.getloadavg()}")
        runs = {"serial (--jobs 1)": ["--jobs", "1"], f"--jobs {args.jobs}": ["--jobs", str(args.jobs)]}
        cluster = None
        if args.dask:
            from dask.distributed import LocalCluster

            cluster = LocalCluster(n_workers=args.jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None)
            runs[f"dask, {args.jobs} workers"] = ["--scheduler", cluster.scheduler_address, "--jobs", "-1"]
        best = {}
        try:
            for r in progress(range(args.repeats), "repeats", quiet=args.quiet):
                for label, extra in runs.items():
                    out = tmp / f"out_{len(best)}_{r}_{abs(hash(label))}"
                    elapsed = run_cli(model, files, out, extra)
                    if label not in best or elapsed < best[label][0]:
                        best[label] = (elapsed, out)
        finally:
            if cluster is not None:
                cluster.close()
        load_after = os.getloadavg()
        serial_time, serial_out = best["serial (--jobs 1)"]
        print(f"\n| run | wall s (best of {args.repeats}) | audio s / wall s | speed-up | outputs = serial |")
        print("| --- | ---: | ---: | ---: | --- |")
        for label, (elapsed, out) in best.items():
            same = same_outputs(serial_out, out, files)
            print(f"| {label} | {elapsed:.1f} | {audio / elapsed:.1f} | {serial_time / elapsed:.2f}x | "
                  f"{'yes' if same else 'NO'} |")
        print(f"\nload average after: {load_after}")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
