"""Quality benchmark: personalized vs generic speech enhancement on the developer audio set.

Protocol (see benchmarks/README.md):

* hold out ``--speakers`` target speakers (default 8, half male and half
  female, chosen with a seeded RNG from ``speakers.csv``); every other
  speaker is an "other speaker";
* per target, :func:`pse_nmf.datasets.make_personalization_task` gives about 30 s of
  clean enrollment speech and ``--n-test`` held-out utterances, each mixed
  with one noise clip at -5, 0 and 5 dB;
* every method is built once per target from the task and then enhances
  each mixture; the scores are SI-SDR improvement, wide-band PESQ and eSTOI,
  and the wall time of the enhancement call (fitting is timed apart).

Adding a method is one entry in :data:`METHODS`: a name and a factory that
takes a :class:`BenchTask` and returns ``enhance(mixture) -> waveform``.

Run ``python benchmarks/quality.py --quick`` for a smoke run, or
``python benchmarks/quality.py`` for the full protocol (a few minutes).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DEFAULT_DATA,
    add_quiet_argument,
    progress,
    SharedCache,
    Unavailable,
    check_data,
    ci95,
    derived_seeds,
    format_machine_info,
    format_table,
    machine_info,
    make_out_dir,
    mean,
    parse_speakers,
    read_speakers,
    take_seconds,
    timed,
    write_csv,
    write_json,
)

import pse_nmf  # noqa: E402

SR = 16000
SNRS = (-5.0, 0.0, 5.0)


@dataclass
class BenchTask:
    """What a method factory gets for one target speaker.

    Attributes
    ----------
    speaker : str
        Target speaker id.
    enrollment : list of ndarray of shape (n_samples,)
        About ``enroll_seconds`` of the target's clean speech (16 kHz, float32).
    personalization : pse_nmf.datasets.PersonalizationTask
        The whole task (enrollment, test mixtures); factories must not read
        ``personalization.test`` (it is the test set).
    seed : int
        The benchmark seed, to pass as ``random_state``.
    shared : SharedCache
        One-off objects shared by all targets; build them with
        ``shared.get(key, build)`` so the build is timed once and reused.
    sr : int
    """

    speaker: str
    enrollment: list
    personalization: object
    seed: int
    shared: SharedCache
    data: Path
    other_speakers: list
    other_seconds: float
    sr: int = SR

    @property
    def other_speech(self):
        """Speaker -> about ``other_seconds`` of clean speech of each non-target speaker (loaded once)."""

        def load():
            seeds = derived_seeds(self.seed, len(self.other_speakers), stream=1)
            return {
                spk: take_seconds(self.data / "speech", spk, self.other_seconds, s, sr=self.sr)
                for spk, s in zip(self.other_speakers, seeds)
            }

        return self.shared.get("data:other speech", load)


@dataclass
class Method:
    """A row of the benchmark.

    ``factory(task)`` returns ``enhance(mixture) -> enhanced`` (same length);
    with ``oracle=True`` it is called ``enhance(mixture, clean_speech)``.
    A factory raises :class:`_common.Unavailable` when an optional
    dependency is missing; the row is then skipped with a note.
    """

    name: str
    factory: Callable
    oracle: bool = False


# -- the methods ------------------------------------------------------------------------------------------
def _ssnmf(seed):
    """The semi-supervised NMF estimator, with the same settings for the personal and generic rows."""
    return pse_nmf.SemiSupervisedNMF(random_state=seed)


def _noisy(task):
    return lambda x: x


def _noisereduce(task):
    try:
        import noisereduce
    except ImportError as exc:
        raise Unavailable("noisereduce is not installed (pip install noisereduce)") from exc
    return lambda x: noisereduce.reduce_noise(y=x, sr=task.sr)


def _oracle_irm(task):
    return pse_nmf.audio.oracle_mask_denoise


def _ssnmf_personal(task):
    return _ssnmf(task.seed).fit(task.enrollment).denoise


def _ssnmf_generic(task):
    def fit():
        recordings = [y for utts in task.other_speech.values() for y in utts]
        return _ssnmf(task.seed).fit(recordings)

    return task.shared.get("SSNMF generic", fit).denoise


def _usm_zero_shot_model(task):
    """The universal speech model fitted once on the other speakers (shared by the two USM rows)."""
    return task.shared.get("USM zero-shot", lambda: pse_nmf.USM(random_state=task.seed).fit(task.other_speech))


def _usm_zero_shot(task):
    return _usm_zero_shot_model(task).denoise


#: Few-shot row: a 64-atom personal block (as many atoms as the personal SemiSupervisedNMF) unpenalised, the
#: universal blocks only filling in, and the staged noise updates (noise atoms fitted on the quietest frames, then
#: held for 50 iterations, then 30 free ones), whose mask is averaged with that of a plain 100-iteration solve
#: (``noise_init="staged-averaged"``) and smoothed over 3 frames (the default); the per-frame block penalty (1.0, every block) and
#: two such staged / plain pairs from different random starts (``_N_SOLVES``), as the zero-shot defaults. Chosen on
#: 8 non-target tuning speakers; see USM's Notes.


def _usm_few_shot(task):
    # a deep copy: personalize adds a block in place, and the shared zero-shot model must stay as fitted
    model = copy.deepcopy(_usm_zero_shot_model(task))
    # the library's few-shot setting: a 64-atom personal block and USM.few_shot_params("target")
    return model.personalize(task.enrollment, "target", mode="few-shot").denoise


def _mld_personal(task):
    return pse_nmf.MLD(random_state=task.seed).fit(task.enrollment).denoise


def _mld_universal(task):
    return task.shared.get("MLD universal", lambda: pse_nmf.MLD(random_state=task.seed).fit(task.other_speech)).denoise


def _exemplar_personal(task):
    return pse_nmf.ExemplarNMF(random_state=task.seed).fit(task.enrollment).denoise


def _exemplar_universal(task):
    # the default n_exemplars=2000 random frames of the ~12 min (about 45 000 frames) of the other speakers
    def fit():
        recordings = [y for utts in task.other_speech.values() for y in utts]
        return pse_nmf.ExemplarNMF(random_state=task.seed).fit(recordings)

    return task.shared.get("Exemplar universal", fit).denoise


#: The benchmark rows, in table order. Later methods append ``Method(name, factory)`` here.
METHODS = [
    Method("noisy", _noisy),
    Method("noisereduce", _noisereduce),
    Method("oracle IRM", _oracle_irm, oracle=True),
    Method("SSNMF personal", _ssnmf_personal),
    Method("SSNMF generic", _ssnmf_generic),
    Method("USM zero-shot", _usm_zero_shot),
    Method("USM few-shot", _usm_few_shot),
    Method("MLD personal", _mld_personal),
    Method("MLD universal", _mld_universal),
    Method("Exemplar personal", _exemplar_personal),
    Method("Exemplar universal", _exemplar_universal),
]
#: Rows that are not methods to compare but the input and the ceiling.
REFERENCE_ROWS = ("noisy", "oracle IRM")
#: Every other method is compared with each of these (when both ran).
BASELINES = ("SSNMF generic", "noisereduce")
CEILING = "oracle IRM"


# -- running ----------------------------------------------------------------------------------------------
def _slug(name):
    return "".join(ch for ch in name.lower() if ch.isalnum())


def select_methods(spec):
    if spec is None:
        return list(METHODS)
    by_slug = {_slug(m.name): m for m in METHODS}
    chosen = []
    for item in spec.split(","):
        if not item.strip():
            continue
        m = by_slug.get(_slug(item))
        if m is None:
            raise SystemExit(f"unknown method {item.strip()!r}; known: {', '.join(m.name for m in METHODS)}")
        if m not in chosen:
            chosen.append(m)
    order = {m.name: i for i, m in enumerate(METHODS)}
    return sorted(chosen, key=lambda m: order[m.name])


class _WarningLog:
    """Counts warnings by (method, category, first line) instead of printing each."""

    def __init__(self):
        self.counts = {}

    def run(self, method, fn, *args):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = fn(*args)
        for w in caught:
            key = (method, w.category.__name__, str(w.message).splitlines()[0][:120])
            self.counts[key] = self.counts.get(key, 0) + 1
        return out


def _score(estimate, speech):
    return {
        "si_sdr": pse_nmf.metrics.si_sdr(estimate, speech),
        "pesq": pse_nmf.metrics.pesq(estimate, speech, sr=SR),
        "estoi": pse_nmf.metrics.estoi(estimate, speech, sr=SR),
    }


def run(args):
    t_start = time.perf_counter()
    data = check_data(args.data)
    speakers = read_speakers(data)
    targets, others = parse_speakers(args.speakers, speakers, args.seed)
    methods = select_methods(args.methods)
    info = machine_info()
    out = make_out_dir(args.out, "quality")

    print(format_machine_info(info))
    print(f"data: {data}")
    print(
        f"seed {args.seed}; {len(targets)} target speaker(s): "
        + ", ".join(f"{s} ({speakers[s]['gender']}, {speakers[s]['age_group']})" for s in targets)
    )
    print(
        f"{len(others)} other speakers for the generic model, about {args.generic_seconds:g} s each; "
        f"enrollment {args.enroll_seconds:g} s; {args.n_test} test utterance(s) per target x SNRs "
        f"{', '.join(f'{s:g}' for s in SNRS)} dB"
    )
    print(f"SSNMF settings: {_ssnmf(args.seed).get_params()}")
    print(f"methods: {', '.join(m.name for m in methods)}")
    print(flush=True)

    shared = SharedCache()
    wlog = _WarningLog()
    skipped = {}
    fit_s = {m.name: [] for m in methods}
    once_s = {m.name: 0.0 for m in methods}
    first_call_s = {}
    rows = []
    task_seeds = derived_seeds(args.seed, len(targets), stream=0)

    for k, (speaker, task_seed) in enumerate(progress(list(zip(targets, task_seeds)), "targets", quiet=args.quiet)):
        ptask, t_task = timed(
            pse_nmf.datasets.make_personalization_task, data / "speech", data / "noise", speaker,
            enroll_seconds=args.enroll_seconds, snrs=SNRS, n_test=args.n_test, random_state=task_seed,
        )
        task = BenchTask(
            speaker=speaker, enrollment=ptask.enrollment, personalization=ptask, seed=args.seed, shared=shared,
            data=data, other_speakers=others, other_seconds=args.generic_seconds,
        )
        print(
            f"[{k + 1}/{len(targets)}] {speaker}: enrollment {ptask.enrollment_seconds:.1f} s "
            f"({len(ptask.enrollment)} utts), {len(ptask.test)} mixtures, noises "
            f"{sorted({t.noise_type for t in ptask.test})}",
            flush=True,
        )
        mix_scores = [_score(t.mixture, t.speech) for t in ptask.test]

        for m in methods:
            if m.name in skipped:
                continue
            built = dict(shared.build_seconds)
            try:
                enhance, t_fit = timed(wlog.run, m.name, m.factory, task)
            except Unavailable as exc:
                skipped[m.name] = str(exc)
                print(f"  note: skipping {m.name!r}: {exc}", flush=True)
                continue
            new_builds = {key: s for key, s in shared.build_seconds.items() if key not in built}
            t_fit -= sum(new_builds.values())
            for key, s in new_builds.items():
                if key.startswith("data:"):
                    print(f"  loaded {key[5:]} in {s:.1f} s", flush=True)
                else:
                    once_s[m.name] += s
                    print(f"  {key}: fitted once in {s:.1f} s (shared by all targets)", flush=True)
            fit_s[m.name].append(t_fit)

            def call(test, enhance=enhance, oracle=m.oracle):
                args_ = (test.mixture, test.speech) if oracle else (test.mixture,)
                return wlog.run(m.name, enhance, *args_)

            if m.name not in first_call_s:  # warm-up: Numba compilation, caches, lazy imports
                first_call_s[m.name] = timed(call, ptask.test[0])[1]
            t_method = 0.0
            for test, mix in zip(ptask.test, mix_scores):
                est, t_enh = timed(call, test)
                t_method += t_enh
                est = np.asarray(est)
                if est.shape != test.mixture.shape:
                    raise ValueError(
                        f"{m.name} returned shape {est.shape} for a mixture of shape {test.mixture.shape}"
                    )
                scores = mix if est is test.mixture else _score(est, test.speech)
                duration = test.mixture.size / SR
                rows.append({
                    "method": m.name,
                    "speaker": speaker,
                    "gender": speakers[speaker]["gender"],
                    "age_group": speakers[speaker]["age_group"],
                    "utterance": test.utterance,
                    "noise_type": test.noise_type,
                    "noise_clip": test.noise_clip,
                    "snr_db": test.snr_db,
                    "duration_s": duration,
                    "si_sdr": scores["si_sdr"],
                    "si_sdr_mixture": mix["si_sdr"],
                    "si_sdri": scores["si_sdr"] - mix["si_sdr"],
                    "pesq": scores["pesq"],
                    "pesq_mixture": mix["pesq"],
                    "estoi": scores["estoi"],
                    "estoi_mixture": mix["estoi"],
                    "enhance_s": t_enh,
                    "rtf": t_enh / duration,
                })
            print(
                f"  {m.name:<16} fit {t_fit:6.2f} s   enhance {t_method:6.2f} s   "
                f"SI-SDRi {mean(r['si_sdri'] for r in rows if r['method'] == m.name and r['speaker'] == speaker):+6.2f} dB",
                flush=True,
            )

    ran = [m for m in methods if m.name not in skipped]
    summary = summarize(rows, ran, fit_s, once_s, first_call_s)
    comparisons = compare(rows, ran)
    ceiling = ceiling_fractions(summary, ran)
    total_s = time.perf_counter() - t_start

    print()
    print(report(summary, comparisons, ceiling, len(targets), args.n_test))
    if skipped:
        print("\nskipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
    if wlog.counts:
        print("\nwarnings:")
        for (method, cat, msg), n in sorted(wlog.counts.items()):
            print(f"  {method}: {n} x {cat}: {msg}")
    data_s = sum(s for key, s in shared.build_seconds.items() if key.startswith("data:"))
    loaded = f"; loading the other speakers' speech {data_s:.1f} s" if data_s else ""
    print(f"\ntotal wall time {total_s:.1f} s ({total_s / 60:.1f} min){loaded}")

    write_csv(rows, out / "mixtures.csv")
    write_json(
        {
            "benchmark": "quality",
            "protocol": {
                "seed": args.seed,
                "targets": {s: speakers[s] for s in targets},
                "other_speakers": others,
                "n_test": args.n_test,
                "snrs_db": list(SNRS),
                "enroll_seconds": args.enroll_seconds,
                "generic_seconds_per_speaker": args.generic_seconds,
                "ssnmf_params": _ssnmf(args.seed).get_params(),
                "quick": args.quick,
            },
            "machine": info,
            "methods": summary,
            "comparisons": comparisons,
            "oracle_fraction": ceiling,
            "skipped": skipped,
            "warnings": [
                {"method": m, "category": c, "message": msg, "count": n} for (m, c, msg), n in wlog.counts.items()
            ],
            "shared_build_s": shared.build_seconds,
            "total_wall_s": total_s,
        },
        out / "summary.json",
    )
    print(f"wrote {out / 'mixtures.csv'} and {out / 'summary.json'}")
    return summary


# -- summaries --------------------------------------------------------------------------------------------
def _snr_key(snr):
    return f"si_sdri@{snr:g}"


def summarize(rows, methods, fit_s, once_s, first_call_s):
    summary = {}
    for m in methods:
        mr = [r for r in rows if r["method"] == m.name]
        if not mr:
            continue
        s = {
            "n": len(mr),
            "si_sdri": mean(r["si_sdri"] for r in mr),
            "si_sdri_ci95": ci95([r["si_sdri"] for r in mr]),
            "si_sdr": mean(r["si_sdr"] for r in mr),
            "pesq": mean(r["pesq"] for r in mr),
            "pesq_nan": sum(1 for r in mr if not np.isfinite(r["pesq"])),
            "estoi": mean(r["estoi"] for r in mr),
            "rtf": sum(r["enhance_s"] for r in mr) / sum(r["duration_s"] for r in mr),
            "enhance_s_mean": mean(r["enhance_s"] for r in mr),
            "fit_s_mean": mean(fit_s[m.name]),
            "fit_once_s": once_s[m.name],
            "first_call_s": first_call_s.get(m.name),
        }
        for snr in SNRS:
            s[_snr_key(snr)] = mean(r["si_sdri"] for r in mr if r["snr_db"] == snr)
        summary[m.name] = s
    return summary


def _paired(rows, a, b):
    key = lambda r: (r["speaker"], r["utterance"], r["snr_db"])  # noqa: E731
    rb = {key(r): r for r in rows if r["method"] == b}
    return [(r, rb[key(r)]) for r in rows if r["method"] == a and key(r) in rb]


def compare(rows, methods):
    """Paired differences (same mixtures) of every method against each baseline."""
    names = [m.name for m in methods]
    out = []
    for a in names:
        if a in REFERENCE_ROWS:
            continue
        for b in BASELINES:
            if b == a or b not in names:
                continue
            if a in BASELINES and BASELINES.index(b) < BASELINES.index(a):
                continue  # already shown the other way round
            pairs = _paired(rows, a, b)
            if not pairs:
                continue
            d = [ra["si_sdri"] - rb["si_sdri"] for ra, rb in pairs]
            c = {
                "a": a,
                "b": b,
                "n": len(pairs),
                "d_si_sdri": mean(d),
                "d_si_sdri_ci95": ci95(d),
                "d_pesq": mean(ra["pesq"] - rb["pesq"] for ra, rb in pairs),
                "d_estoi": mean(ra["estoi"] - rb["estoi"] for ra, rb in pairs),
                "win_rate": float(np.mean([x > 0 for x in d])),
            }
            for snr in SNRS:
                c[f"d_{_snr_key(snr)}"] = mean(
                    ra["si_sdri"] - rb["si_sdri"] for ra, rb in pairs if ra["snr_db"] == snr
                )
            out.append(c)
    return out


def ceiling_fractions(summary, methods):
    """SI-SDRi of each method as a fraction of the oracle IRM's (ratio of means), overall and per SNR."""
    if CEILING not in summary:
        return {}
    top = summary[CEILING]
    out = {}
    for m in methods:
        if m.name in REFERENCE_ROWS or m.name not in summary:
            continue
        s = summary[m.name]
        out[m.name] = {k: s[k] / top[k] for k in ["si_sdri", *(_snr_key(snr) for snr in SNRS)]}
    return out


def report(summary, comparisons, ceiling, n_targets, n_test):
    snr_cols = [(_snr_key(s), f"@{s:+g}dB", "+.2f") for s in SNRS]
    rows = [{"method": name, **s} for name, s in summary.items()]
    parts = [
        format_table(
            rows,
            [
                ("method", "method", "s"),
                ("n", "n", "d"),
                ("si_sdri", "SI-SDRi", "+.2f"),
                ("si_sdri_ci95", "±95%", ".2f"),
                *snr_cols,
                ("pesq", "PESQ", ".2f"),
                ("estoi", "eSTOI", ".3f"),
                ("rtf", "RTF", ".4f"),
                ("fit_s_mean", "fit s", ".2f"),
                ("fit_once_s", "once s", ".1f"),
                ("first_call_s", "1st call s", ".2f"),
            ],
            title=(
                f"Quality: {n_targets} target speaker(s) x {n_test} utterance(s) x {len(SNRS)} SNRs "
                "(SI-SDRi in dB, mean; PESQ wide band; RTF = enhancement time / audio duration; "
                "fit s = mean per-target fit; once s = one-off shared fit)"
            ),
        )
    ]
    if comparisons:
        rows = [{"pair": f"{c['a']} - {c['b']}", **c} for c in comparisons]
        parts.append(
            format_table(
                rows,
                [
                    ("pair", "paired difference", "s"),
                    ("n", "n", "d"),
                    ("d_si_sdri", "dSI-SDRi", "+.2f"),
                    ("d_si_sdri_ci95", "±95%", ".2f"),
                    *[(f"d_{k}", h, f) for k, h, f in snr_cols],
                    ("d_pesq", "dPESQ", "+.2f"),
                    ("d_estoi", "deSTOI", "+.3f"),
                    ("win_rate", "wins", ".0%"),
                ],
                title="Differences on the same mixtures (wins = share of mixtures where the first has the higher SI-SDR)",
            )
        )
    if ceiling:
        rows = [{"method": name, **c} for name, c in ceiling.items()]
        parts.append(
            format_table(
                rows,
                [("method", "method", "s"), ("si_sdri", "overall", ".0%"), *[(k, h, ".0%") for k, h, _ in snr_cols]],
                title=f"Fraction of the {CEILING} ceiling (SI-SDRi / oracle SI-SDRi)",
            )
        )
    return "\n\n".join(parts)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help=f"developer audio set (speech/, noise/, speakers.csv) [default {DEFAULT_DATA}]")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default benchmarks/results/quality-<timestamp>/)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice [default 0]")
    p.add_argument("--speakers", default=None,
                   help="number of held-out target speakers (gender-stratified, seeded) or comma-separated ids "
                        "[default 8; 2 with --quick]")
    p.add_argument("--n-test", type=int, default=None, help="test utterances per target [default 4; 2 with --quick]")
    p.add_argument("--methods", default=None,
                   help="comma-separated subset of: " + ", ".join(m.name for m in METHODS)
                        + " (case, spaces and hyphens ignored)")
    p.add_argument("--enroll-seconds", type=float, default=30.0, help="enrollment speech per target [default 30]")
    p.add_argument("--generic-seconds", type=float, default=None,
                   help="speech per other speaker for the generic model [default 30; 5 with --quick]")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 speakers, 2 utterances, small generic model")
    add_quiet_argument(p)
    args = p.parse_args(argv)
    quick = args.quick
    if args.speakers is None:
        args.speakers = "2" if quick else "8"
    if args.n_test is None:
        args.n_test = 2 if quick else 4
    if args.generic_seconds is None:
        args.generic_seconds = 5.0 if quick else 30.0
    if args.n_test < 1:
        p.error("--n-test must be at least 1")
    return args


def main(argv=None):
    run(parse_args(argv))


if __name__ == "__main__":
    main()
