"""Benchmark of OnlineNMF (streaming, online semi-supervised NMF).

Measures, on the developer set (../shared/data):

* speed: real-time factor of ``denoise`` and per-frame cost (ms / frame,
  against the 16 ms hop at 16 kHz / 256);
* quality on mixtures whose noise type changes mid-utterance (first half one
  noise type, second half another, each half scaled to the SNR), SI-SDR
  improvement of OnlineNMF against offline SemiSupervisedNMF fitted on the same
  enrollment (and sharing its speech dictionary) and noisereduce (if installed);
* peak Python memory (tracemalloc) of ``denoise_file`` on 1 min and 30 min of
  audio (the mixture tiled, written to a temporary folder).

Run: OPENBLAS_NUM_THREADS=1 python benchmarks/online.py [--quick] [--no-memory]
"""

import argparse
import glob
import os
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from pse_nmf import SemiSupervisedNMF
from pse_nmf.audio import read_audio
from pse_nmf.metrics import si_sdr
from pse_nmf import OnlineNMF
from _common import add_quiet_argument, progress

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
SR = 16000


def noise_segment(rng, noise_type, n):
    files = sorted(glob.glob(str(ROOT / "noise" / noise_type / "*.flac")))
    y = read_audio(files[rng.integers(0, len(files))])[0]
    y = np.tile(y, int(np.ceil(n / y.size)) + 1)
    o = rng.integers(0, y.size - n)
    return y[o:o + n]


def scaled(s, n, snr):
    return n * np.sqrt(np.sum(s**2) / max(np.sum(n**2), 1e-12) / 10 ** (snr / 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    add_quiet_argument(ap)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    speakers = sorted(p.name for p in (ROOT / "speech").iterdir())[: 2 if args.quick else 6]
    types = sorted(p.name for p in (ROOT / "noise").iterdir())
    try:
        import noisereduce
    except ImportError:
        noisereduce = None
    rows = {"online": [], "offline": [], "noisereduce": []}
    t_on = t_off = dur = 0.0
    n_frames = 0
    for spk in progress(speakers, "speakers", quiet=args.quiet):
        ys = [read_audio(f)[0] for f in sorted(glob.glob(str(ROOT / "speech" / spk / "*.flac")))]
        enr, tot = [], 0
        for y in ys:
            if tot >= 30 * SR:
                break
            enr.append(y)
            tot += y.size
        offline = SemiSupervisedNMF(random_state=0).fit(enr)
        online = OnlineNMF(speech_model=offline, random_state=0).fit()
        for s in ys[len(enr):len(enr) + (1 if args.quick else 3)]:
            s = np.concatenate([s, s])
            for snr in (-5, 0, 5):
                t1, t2 = rng.choice(types, 2, replace=False)
                h = s.size // 2
                n = np.concatenate([scaled(s[:h], noise_segment(rng, t1, h), snr),
                                    scaled(s[h:], noise_segment(rng, t2, s.size - h), snr)])
                x = (s + n).astype(np.float32)
                base = si_sdr(x, s)
                t = time.perf_counter()
                e_on = online.denoise(x)
                t_on += time.perf_counter() - t
                t = time.perf_counter()
                e_off = offline.denoise(x)
                t_off += time.perf_counter() - t
                dur += x.size / SR
                n_frames += 1 + x.size // online.hop_length
                rows["online"].append(si_sdr(e_on, s) - base)
                rows["offline"].append(si_sdr(e_off, s) - base)
                if noisereduce is not None:
                    rows["noisereduce"].append(si_sdr(noisereduce.reduce_noise(y=x, sr=SR), s) - base)
    print(f"changing-noise mixtures: {len(rows['online'])} ({len(speakers)} speakers, SNR -5/0/5 dB, "
          f"{dur:.0f} s of audio)")
    for name, r in rows.items():
        if r:
            print(f"  SI-SDR improvement  {name:12s} {np.mean(r):6.2f} dB  (median {np.median(r):.2f})")
    print(f"  RTF online  {t_on / dur:.4f}   per-frame {1e3 * t_on / n_frames:.3f} ms "
          f"(hop = {1e3 * 256 / SR:.1f} ms; target <= 1.6 ms)")
    print(f"  RTF offline {t_off / dur:.4f}")
    if args.no_memory:
        return
    x = (s + n).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        peaks = {}
        for minutes in progress((1, 30), "memory runs", quiet=args.quiet):
            src = Path(tmp) / f"in_{minutes}.wav"
            reps = int(np.ceil(minutes * 60 * SR / x.size))
            with sf.SoundFile(src, "w", samplerate=SR, channels=1, subtype="PCM_16") as fh:
                for _ in range(reps):
                    fh.write(x)
            out = Path(tmp) / f"out_{minutes}.wav"
            tracemalloc.start()
            t = time.perf_counter()
            online.denoise_file(src, out)
            el = time.perf_counter() - t
            peaks[minutes] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"  denoise_file {minutes:2d} min: peak traced memory {peaks[minutes] / 2**20:.2f} MiB, "
                  f"{el:.1f} s (RTF {el / (reps * x.size / SR):.3f} under tracemalloc)")
            os.unlink(src)
            os.unlink(out)
        print(f"  memory ratio 30 min / 1 min: {peaks[30] / peaks[1]:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
