"""Command line interface: ``pse-nmf fit | fit-many | train | personalize | denoise | evaluate | demo``.

``main(argv)`` returns the exit status instead of exiting, so it can be
called in-process (tests, notebooks): 0 on success, 1 on an error with a
one-line ``pse-nmf: error: ...`` message on stderr (bad audio, missing or
damaged files, refused overwrites), 2 on a usage error (argparse's
convention). The ``pse-nmf`` console script and ``python -m pse_nmf`` exit
with that status.

Files are never half-written: audio and models are written to a temporary
file beside the target and moved into place. ``denoise`` never replaces an
input file, even with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ._batch import _check_plan, _denoise_planned, _same_file, _streaming_model, _writable_ext, fit_many
from ._persistence import ModelFileError, load_model
from ._version import __version__
from .audio._io import AUDIO_EXTENSIONS, _atomic_target, read_audio
from .audio._mixin import load_recordings_list
from .decomposition._exemplar import ExemplarNMF
from .decomposition._mld import MLD
from .decomposition._online import OnlineNMF
from .decomposition._semi import SemiSupervisedNMF
from .decomposition._usm import USM

__all__ = ["main", "MODELS"]

PROG = "pse-nmf"

#: ``pse-nmf fit --model NAME`` -> estimator class. A new model is one line here.
MODELS = {
    "semi": SemiSupervisedNMF,
    "usm": USM,
    "mld": MLD,
    "exemplar": ExemplarNMF,
    "online": OnlineNMF,
}

#: models fitted on several speakers: their inputs are speaker folders, one block each
_BY_SPEAKER = (USM,)

# fit's options -> the estimator parameter each one sets (when given).
_FIT_OPTIONS = {
    "sr": "sr",
    "n_components": "n_components",
    "sparsity": "sparsity",
    "max_iter": "max_iter",
    "seed": "random_state",
    "known": "known",
}

# parameters folded into one option (issue 18): --set with one of them names the option
_FOLDED_PARAMS = {"quiet_noise_iter": "noise_init", "fixed_noise_iter": "noise_init", "unstaged_iter": "noise_init"}

_EVAL_METRICS = ("si_sdr", "sdr", "pesq", "stoi", "estoi", "dnsmos", "pdnsmos")
_EVAL_DEFAULT = "si_sdr,pesq,estoi"
# no-reference metrics (pse_nmf.metrics.dnsmos): each gives these columns, prefixed by its name
_NO_REFERENCE = {"dnsmos": False, "pdnsmos": True}
_DNSMOS_KEYS = ("sig", "bak", "ovrl", "p808")
_EVAL_SR = 16000


class _CommandError(Exception):
    """A usage error found after parsing (exit status 2)."""


# -- argument types --------------------------------------------------------------------------------
def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _non_negative_float(text):
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def _setting(text):
    """``NAME=VALUE``; VALUE is read as JSON (numbers, true/false/null, lists), else kept as text."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name, value


def _metric_list(text):
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in _EVAL_METRICS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown metric(s) {unknown or [text]}; choose from {', '.join(_EVAL_METRICS)}"
        )
    return tuple(dict.fromkeys(names))


# -- parser ----------------------------------------------------------------------------------------
def _build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Personalized speech enhancement with NMF: fit a small model to one speaker's clean "
        "speech, then denoise that speaker's noisy recordings.",
        epilog="examples:\n"
        "  pse-nmf fit -o alice.npz recordings/alice/\n"
        "  pse-nmf denoise -m alice.npz call1.wav call2.wav -o enhanced/\n"
        "  pse-nmf denoise -m generalist call1.wav   (the pretrained neural generalist)\n"
        "  pse-nmf denoise -m experts call1.wav      (the pretrained sparse mixture of experts)\n"
        "  pse-nmf denoise -m generalist -m alice.npz --ensemble call1.wav   (their outputs averaged)\n"
        "  pse-nmf evaluate enhanced/call1_enhanced.wav --reference clean/call1.wav --mixture call1.wav\n"
        "  pse-nmf demo --out-dir demo_output",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("fit", help="fit a personal model on clean recordings and save it",
                       description="Fit a model on clean recordings of one speaker (or, with --known noise, "
                       "of the noise) and save it as a .npz model file.")
    p.add_argument("speech", nargs="+", metavar="SPEECH",
                   help="clean audio files and/or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.npz", help="model file to write")
    p.add_argument("--model", choices=sorted(MODELS), default="semi", help="model kind (default: semi)")
    p.add_argument("--known", choices=("speech", "noise"), default=None,
                   help="what the recordings hold (default: speech); 'noise' learns a noise model instead")
    p.add_argument("--sr", type=_positive_int, default=None, help="model sample rate in Hz (default 16000)")
    p.add_argument("--n-components", type=_positive_int, default=None, metavar="N",
                   help="dictionary atoms learned from the recordings")
    p.add_argument("--sparsity", type=_non_negative_float, default=None, metavar="S",
                   help="L1 weight on the activations")
    p.add_argument("--max-iter", type=_positive_int, default=None, metavar="N", help="fitting iterations")
    p.add_argument("--seed", type=_non_negative_int, default=None, metavar="N", help="random seed")
    p.add_argument("--set", type=_setting, action="append", default=[], metavar="NAME=VALUE", dest="settings",
                   help="any other model parameter, e.g. --set n_noise_components=32 (repeatable)")
    p.add_argument("--downmix", action="store_true", help="average the channels of multichannel files")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    p.set_defaults(handler=_cmd_fit)

    p = sub.add_parser("denoise", help="enhance noisy recordings with a fitted model",
                       description="Enhance noisy files. Each output keeps its input's sample rate, length and "
                       "sample format. Inputs are never overwritten, even with --overwrite.")
    p.add_argument("noisy", nargs="+", metavar="NOISY", help="noisy audio files")
    p.add_argument("-m", "--model", required=True, metavar="MODEL", action="append",
                   help="model file from 'pse-nmf fit' or 'pse-nmf train', or the name of a pretrained model "
                   f"shipped in the package ({', '.join(_pretrained_names()) or 'none'}; needs the neural extra); "
                   "repeat it with --ensemble")
    p.add_argument("--enroll", action="append", default=None, metavar="CLEAN",
                   help="a few seconds of the wanted speaker's clean speech (a file or folder; repeat it for more), "
                   "for a speaker extractor (-m extractor): that voice is kept, other talkers and noise removed")
    p.add_argument("--ensemble", action="store_true",
                   help="combine the -m models (two or more) by averaging their output waveforms with equal "
                   "weights (EnsembleEnhancer; save a weighted one with pse_nmf.EnsembleEnhancer and pass its file)")
    p.add_argument("-o", "--output", default=None, metavar="OUT",
                   help="output file (one input, with an audio extension) or folder (created if missing); "
                   "default: beside each input, with the suffix")
    p.add_argument("--suffix", default="_enhanced",
                   help="added to each input's name to name its output (default: _enhanced)")
    p.add_argument("--downmix", action="store_true", help="average the channels of multichannel files")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    p.add_argument("--stream", action="store_true",
                   help="block-wise, constant-memory denoising with OnlineNMF (the noise model follows the "
                   "noise over time); any fitted speech model serves as its speech dictionary")
    p.add_argument("--block-size", type=_positive_int, default=65536, metavar="N",
                   help="samples read per block with --stream (default: 65536; does not change the result)")
    _parallel_options(p, "files")
    p.set_defaults(handler=_cmd_denoise)

    p = sub.add_parser("fit-many", help="fit one model per speaker folder, in parallel",
                       description="Fit one model per speaker: each sub-folder of SPEAKERS holds one speaker's "
                       "clean recordings, and becomes OUT/<speaker>.npz. A speaker whose fit fails is reported; "
                       "the others go on (exit status 1 if any failed).")
    p.add_argument("speakers", metavar="SPEAKERS", help="folder of speaker folders")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="folder for the model files (created)")
    p.add_argument("--model", choices=sorted(set(MODELS) - {"usm"}), default="semi",
                   help="model kind (default: semi)")
    p.add_argument("--known", choices=("speech", "noise"), default=None, help=argparse.SUPPRESS)
    p.add_argument("--sr", type=_positive_int, default=None, help="model sample rate in Hz (default 16000)")
    p.add_argument("--n-components", type=_positive_int, default=None, metavar="N",
                   help="dictionary atoms learned from the recordings")
    p.add_argument("--sparsity", type=_non_negative_float, default=None, metavar="S",
                   help="L1 weight on the activations")
    p.add_argument("--max-iter", type=_positive_int, default=None, metavar="N", help="fitting iterations")
    p.add_argument("--seed", type=_non_negative_int, default=0, metavar="N", help="random seed (default 0)")
    p.add_argument("--set", type=_setting, action="append", default=[], metavar="NAME=VALUE", dest="settings",
                   help="any other model parameter (repeatable)")
    p.add_argument("--downmix", action="store_true", help="average the channels of multichannel files")
    p.add_argument("--overwrite", action="store_true", help="replace existing model files")
    _parallel_options(p, "speakers")
    p.set_defaults(handler=_cmd_fit_many)

    p = sub.add_parser("train", help="train a neural generalist on speech and noise folders",
                       description="Train a compact neural enhancer (CompactEnhancer, the architecture of the "
                       "pretrained 'generalist') on clean speech and noise mixed on the fly, and save it. "
                       "Needs the neural extra (pip install \"pse_nmf[neural]\"). With --checkpoint, an "
                       "interrupted training continues with --resume.")
    p.add_argument("speech", nargs="+", metavar="SPEECH",
                   help="clean speech files or folders; a folder of speaker folders is split by speaker for "
                   "validation")
    p.add_argument("-n", "--noise", nargs="+", required=True, metavar="NOISE", help="noise files or folders")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.npz", help="model file to write")
    p.add_argument("--valid-speech", nargs="+", default=None, metavar="SPEECH",
                   help="validation speech (default: a tenth of the speakers of SPEECH)")
    p.add_argument("--checkpoint", default=None, metavar="CKPT.npz", help="checkpoint written after every epoch")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    p.add_argument("--init", default=None, metavar="NAME",
                   help="start from a pretrained model (fine-tuning), e.g. generalist")
    p.add_argument("--loss", choices=("si_sdr_estoi", "si_sdr", "compressed"), default=None,
                   help="training loss (default si_sdr_estoi)")
    p.add_argument("--max-epochs", type=_positive_int, default=None, metavar="N")
    p.add_argument("--patience", type=_positive_int, default=None, metavar="N")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N", help="torch threads (default 1)")
    p.add_argument("--seed", type=_non_negative_int, default=0, metavar="N", help="random seed (default 0)")
    p.add_argument("--set", type=_setting, action="append", default=[], metavar="NAME=VALUE", dest="settings",
                   help="any other CompactEnhancer parameter, e.g. --set hidden_size=64 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines and no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("evaluate", help="score enhanced files (against clean references, or with DNSMOS)",
                       description="Score enhanced files against clean references (pairs in order), or, without "
                       "--reference, with the no-reference DNSMOS P.835 scores (sig, bak, ovrl, p808; needs the "
                       f"dnsmos extra). Files are resampled to {_EVAL_SR // 1000} kHz; each pair must have the same "
                       "duration.")
    p.add_argument("enhanced", nargs="+", metavar="ENHANCED", help="enhanced audio files")
    p.add_argument("--reference", nargs="+", default=None, metavar="CLEAN",
                   help="clean reference files, one per ENHANCED (without them: DNSMOS only)")
    p.add_argument("--mixture", nargs="+", default=None, metavar="NOISY",
                   help="the noisy inputs, one per ENHANCED, to report the improvement")
    p.add_argument("--metrics", type=_metric_list, default=None,
                   help=f"comma-separated, from {','.join(_EVAL_METRICS)} (default: {_EVAL_DEFAULT} with "
                   "--reference, dnsmos without); pdnsmos is personalized DNSMOS")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--downmix", action="store_true", help="average the channels of multichannel files")
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser("demo", help="run the demonstration on the embedded example data",
                       description="Fit a model to one example speaker, denoise a held-out noisy utterance, "
                       "and write the audio, a spectrogram figure and the model.")
    p.add_argument("--out-dir", default="demo_output", metavar="DIR", help="output folder (default: demo_output)")
    p.add_argument("--snr", type=_finite_float, default=0.0, metavar="DB", help="SNR of the mixture (default 0)")
    p.add_argument("--seed", type=_non_negative_int, default=0, metavar="N", help="random seed (default 0)")
    p.add_argument("--speaker", default=None, help="example speaker id (default: the first)")
    p.add_argument("--noise", default=None, metavar="TYPE", help="example noise type (default: street_tram_bus)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(handler=_cmd_demo)
    _add_personalize(sub)
    return parser


# -- fit -------------------------------------------------------------------------------------------
def _parallel_options(p, what):
    p.add_argument("-j", "--jobs", type=_jobs, default=None, metavar="N",
                   help=f"{what} processed in parallel (default 1; -1: all cores, or all Dask workers)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a Dask cluster, e.g. tcp://10.0.0.5:8786 (needs dask.distributed; the workers "
                   "must see the same paths)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no per-file lines")


def _jobs(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or -1, got {text!r}") from None
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or -1, got {text!r}")
    return value


def _cmd_fit_many(args):
    cls = MODELS[args.model]
    model = cls(**_model_params(cls, args))
    try:
        model._validate_params()
    except ValueError as exc:
        raise _CommandError(str(exc)) from None
    out = Path(args.output)
    if out.suffix.lower() in AUDIO_EXTENSIONS + (".npz",):
        raise ValueError(f"-o {str(out)!r} looks like a file; fit-many writes a folder of model files")
    with _backend(args):
        records = fit_many(model, args.speakers, out, n_jobs=args.jobs, overwrite=args.overwrite,
                           downmix=args.downmix, progress=False if args.quiet else None)
    for r in records:
        _report(r, f"{r['speaker']} -> {r['output']}  ({r['seconds']:.1f} s)", args.quiet)
    return _summary(records, "speaker", "were fitted")


def _model_params(cls, args):
    valid = cls().get_params(deep=False)
    params = {}
    for option, param in _FIT_OPTIONS.items():
        value = getattr(args, option)
        if value is None:
            continue
        if param not in valid:
            flag = "--" + option.replace("_", "-")
            raise _CommandError(f"{flag} does not apply to --model {args.model} ({cls.__name__})")
        params[param] = value
    for name, value in args.settings:
        renamed = getattr(cls, "_renamed_params", {}).get(name)
        if name not in valid and renamed is not None:
            raise _CommandError(f"--set {name}: {cls.__name__} calls this parameter {renamed!r} now")
        removed = getattr(cls, "_removed_params", {})
        if name not in valid and name in removed:
            raise _CommandError(
                f"--set {name}: {cls.__name__} no longer has this parameter; it always uses {name}={removed[name]!r}"
            )
        if name not in valid and name in _FOLDED_PARAMS and _FOLDED_PARAMS[name] in valid:
            raise _CommandError(
                f"--set {name}: {cls.__name__} no longer has this parameter; use {_FOLDED_PARAMS[name]} instead"
            )
        if name not in valid:
            raise _CommandError(
                f"--set {name}: {cls.__name__} has no parameter {name!r}; it has {', '.join(sorted(valid))}"
            )
        if name in params:
            raise _CommandError(f"--set {name} repeats a value given by another option")
        params[name] = value
    return params


def _cmd_fit(args):
    cls = MODELS[args.model]
    model = cls(**_model_params(cls, args))
    try:  # a bad --set value is named now, not found as "invalid literal for int()" while reading audio
        model._validate_params()
    except ValueError as exc:
        raise _CommandError(str(exc)) from None
    out = Path(args.output)
    if out.suffix.lower() in AUDIO_EXTENSIONS:
        raise ValueError(f"-o {str(out)!r} has an audio extension; a model file is written there (use .npz)")
    _atomic_target(out, args.overwrite)  # fail before the work, not after
    for source in args.speech:
        if Path(source).is_file() and _same_file(Path(source), out):
            raise ValueError(f"-o {str(out)!r} is one of the training files")
    known = getattr(model, "known", "speech")
    if isinstance(model, _BY_SPEAKER):
        # one folder of speaker folders, or several folders: one speaker each
        folders = [Path(s) for s in args.speech]
        if not all(f.is_dir() for f in folders):
            raise ValueError(f"--model {args.model} is fitted on speaker folders; give a folder of speaker "
                             "folders, or one folder per speaker")
        speakers = folders[0] if len(folders) == 1 else {f.name: f for f in folders}
        t0 = time.perf_counter()
        model.fit(speakers, downmix=args.downmix)
        elapsed = time.perf_counter() - t0
        n_rec = len(getattr(model, "speakers_", []))
        seconds = float("nan")
        recordings = [None] * n_rec
    else:
        recordings = load_recordings_list(args.speech, sr=model.sr, downmix=args.downmix, min_length=model.n_fft,
                                          name=f"{known} recordings")
        seconds = sum(r.size for r in recordings) / model.sr
        t0 = time.perf_counter()
        model.fit(recordings)
        elapsed = time.perf_counter() - t0
    model.save(out, overwrite=args.overwrite)
    atoms = getattr(model, "components_", None)
    size = f" ({atoms.shape[0]} atoms)" if atoms is not None else ""
    what = (f"{len(recordings)} speaker(s)" if isinstance(model, _BY_SPEAKER)
            else f"{len(recordings)} recording(s), {seconds:.1f} s of {known}")
    print(f"fitted {cls.__name__}{size} on {what}, in {elapsed:.1f} s -> {out}")
    return 0


# -- denoise ---------------------------------------------------------------------------------------
class _about:
    """Context: a ValueError raised inside names ``path`` ("x has 100 samples" -> "'a.wav': x has ...")."""

    def __init__(self, *paths):
        self.paths = [str(p) for p in paths]

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None and issubclass(kind, ValueError) and not any(p in str(exc) for p in self.paths):
            message = f"{' vs '.join(repr(p) for p in self.paths)}: {exc}"
            try:
                renamed = type(exc)(message)
            except Exception:  # an exception class with another signature
                renamed = ValueError(message)
            raise renamed from exc
        return False


def _plan_outputs(inputs, output, suffix):
    """Output path for each input, and the folder to create (or None)."""

    def name_for(inp):
        ext = inp.suffix if _writable_ext(inp.suffix) else ".wav"
        return f"{inp.stem}{suffix}{ext}"

    if output is None:
        return [inp.with_name(name_for(inp)) for inp in inputs], None
    out = Path(output)
    # A folder: an existing one, a trailing slash, several inputs, or a new path without an extension.
    as_folder = (out.is_dir() or output.endswith(("/", os.sep)) or len(inputs) > 1
                 or (not out.exists() and not out.suffix))
    if not as_folder:
        if not _writable_ext(out.suffix):
            raise ValueError(f"-o {output!r}: cannot write audio of type {out.suffix or '(no extension)'!r}; "
                             "use e.g. .wav or .flac")
        return [out], None
    if out.exists() and not out.is_dir():
        raise ValueError(f"-o {output!r} is a file, but {len(inputs)} inputs need an output folder")
    return [out / name_for(inp) for inp in inputs], (None if out.is_dir() else out)


def _cmd_denoise(args):
    inputs = [Path(p) for p in args.noisy]
    for inp in inputs:
        if inp.is_dir():
            raise ValueError(f"{str(inp)!r} is a folder; pass the files (e.g. {str(inp / '*.wav')!r})")
        if not inp.is_file():
            raise FileNotFoundError(f"no audio file at {str(inp)!r}")
    if "/" in args.suffix or os.sep in args.suffix:
        raise ValueError(f"--suffix {args.suffix!r} contains a path separator; use -o for another folder")
    outputs, new_folder = _plan_outputs(inputs, args.output, args.suffix)
    model_paths = [Path(m) for m in args.model]
    if len(model_paths) > 1 and not args.ensemble:
        raise ValueError(f"{len(model_paths)} models given (-m); pass --ensemble to combine them, or give one")
    if args.ensemble and len(model_paths) < 2:
        raise ValueError("--ensemble needs two or more models (-m a.npz -m b.npz)")
    if args.ensemble and args.stream:
        raise ValueError("--stream takes one speech model, not an --ensemble")
    _check_plan(inputs, outputs, args.overwrite, protected=model_paths)
    models = [_load_denoiser(path) for path in model_paths]
    for path, model in zip(model_paths, models):
        if not hasattr(model, "denoise"):
            raise ModelFileError(f"{str(path)!r} holds a {type(model).__name__}, which does not denoise audio")
    _enroll(args, model_paths, models)
    if args.ensemble:
        from ._ensemble import EnsembleEnhancer

        names = [f"{i}:{path.name}" for i, path in enumerate(model_paths)]
        model = EnsembleEnhancer(list(zip(names, models))).fit()
    else:
        model = models[0]
    if args.stream:
        model = _streaming_model(model)
    if new_folder is not None:
        new_folder.mkdir(parents=True, exist_ok=True)
    with _backend(args):
        records = _denoise_planned(model, inputs, outputs, n_jobs=args.jobs, overwrite=args.overwrite,
                                   downmix=args.downmix, stream=args.stream, block_size=args.block_size,
                                   progress=False if args.quiet else None)
    for r in records:
        _report(r, f"{r['input']} -> {r['output']}  ({r.get('audio_seconds', 0):.1f} s of audio"
                   f"{', streamed' if args.stream else ''}, {r['seconds']:.2f} s)", args.quiet)
    return _summary(records, "file", "denoised")


def _report(record, line, quiet):
    """Print a task's line (or its error) and the warnings it raised."""
    for message in record["warnings"]:
        print(f"{PROG}: warning: {record.get('input', record.get('speaker'))}: {message}", file=sys.stderr)
    if not record["ok"]:
        print(f"{PROG}: error: {record['error']}", file=sys.stderr)
    elif not quiet:
        print(line, flush=True)


def _summary(records, noun, verb):
    """Exit status 1 if any task failed, with a count on stderr."""
    failed = [r for r in records if not r["ok"]]
    if failed and len(records) > 1:  # one file: its error line says it all
        print(f"{PROG}: {len(failed)} of {len(records)} {noun}(s) failed; the other {len(records) - len(failed)} "
              f"{verb}", file=sys.stderr)
    return 1 if failed else 0


class _backend:
    """``--jobs`` / ``--scheduler``: run joblib's tasks on a Dask cluster while the block runs."""

    def __init__(self, args):
        self.address = getattr(args, "scheduler", None)
        self._stack = None

    def __enter__(self):
        if self.address is None:
            return self
        import contextlib

        try:
            import joblib
            from dask.distributed import Client
        except ImportError as exc:
            raise ImportError(f"--scheduler needs dask.distributed (pip install \"pse_nmf[dask]\"): {exc}") from None
        self._stack = contextlib.ExitStack()
        try:
            self._stack.enter_context(Client(self.address, timeout="10s"))
        except (OSError, TimeoutError) as exc:
            self._stack.close()
            raise OSError(f"--scheduler {self.address!r}: cannot connect ({exc})") from None
        self._stack.enter_context(joblib.parallel_config(backend="dask"))
        return self

    def __exit__(self, *exc):
        if self._stack is not None:
            self._stack.close()
        return False


def _pretrained_names():
    """Names of the pretrained models shipped in the package (read without importing torch)."""
    folder = Path(__file__).resolve().parent / "neural" / "pretrained"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _neural():
    try:
        from . import neural
    except ImportError as exc:
        raise ModelFileError(f"{exc}") from None
    return neural


def _load_denoiser(model_path):
    """A model file, or a pretrained model's name when no such file exists."""
    if not model_path.exists() and str(model_path) in _pretrained_names():
        return _neural().pretrained(str(model_path))
    try:
        return load_model(model_path)
    except ImportError as exc:  # a neural model file without torch
        raise ModelFileError(f"{str(model_path)!r} is a neural model: {exc}") from None


def _enroll(args, model_paths, models):
    """``denoise --enroll``: enroll the speaker extractors among the models (checked before any work)."""
    extractors = [m for m in models if hasattr(m, "enroll")]
    if args.enroll is not None:
        if not extractors:
            raise _CommandError("--enroll is for a speaker extractor (-m extractor, or a model file of one)")
        speech = args.enroll[0] if len(args.enroll) == 1 else list(args.enroll)
        for model in extractors:
            model.enroll(speech)
        return
    for path, model in zip(model_paths, models):
        if hasattr(model, "enroll") and getattr(model, "enrollment_", None) is None:
            raise _CommandError(f"{str(path)!r} is a speaker extractor with no enrolled speaker: pass --enroll "
                                "CLEAN.wav (a few seconds of the wanted voice), or enroll it with 'pse-nmf "
                                "personalize --method extract'")


def _cmd_train(args):
    neural = _neural()
    out = Path(args.output)
    if out.suffix.lower() in AUDIO_EXTENSIONS:
        raise ValueError(f"-o {str(out)!r} has an audio extension; a model file is written there (use .npz)")
    _atomic_target(out, args.overwrite)  # fail before the work, not after
    if args.resume and args.checkpoint is None:
        raise _CommandError("--resume needs --checkpoint")
    model = neural.pretrained(args.init) if args.init else neural.CompactEnhancer()
    valid = set(model.get_params(deep=False))
    params = {"random_state": args.seed, "verbose": 0 if args.quiet else 1}
    for option, param in (("loss", "loss"), ("max_epochs", "max_epochs"), ("patience", "patience"),
                          ("threads", "n_threads")):
        if getattr(args, option) is not None:
            params[param] = getattr(args, option)
    for name, value in args.settings:
        if name not in valid:
            raise _CommandError(f"--set {name}: CompactEnhancer has no parameter {name!r}; it has "
                                f"{', '.join(sorted(valid))}")
        params[name] = value
    try:
        model.set_params(**params)
    except (TypeError, ValueError) as exc:
        raise _CommandError(str(exc)) from None

    def source(items):
        return items[0] if len(items) == 1 else list(items)

    validation = None
    if args.valid_speech is not None:
        validation = (source(args.valid_speech), source(args.noise))
    import contextlib

    from .neural import _engine

    quiet = _engine.quiet_progress() if args.quiet else contextlib.nullcontext()
    t0 = time.perf_counter()
    with quiet:
        model.fit(source(args.speech), source(args.noise), validation=validation, checkpoint=args.checkpoint,
                  resume=args.resume)
    model.save(out, overwrite=args.overwrite)
    print(f"trained {type(model).__name__} for {model.n_epochs_} epochs (best validation SI-SDR "
          f"{model.best_loss_:.2f} dB at epoch {model.best_epoch_}) in {(time.perf_counter() - t0) / 60:.1f} min "
          f"-> {out}")
    return 0


# -- evaluate --------------------------------------------------------------------------------------
def _read_for_eval(path, downmix):
    y, _ = read_audio(path, sr=_EVAL_SR, downmix=downmix, dtype=np.float64)
    native_sr = _native_rate(path)
    return y, native_sr


def _native_rate(path):
    import soundfile as sf

    return int(sf.info(str(path)).samplerate)


def _align(signals):
    """Check that the signals of one row have one length; trim resampling round-off (a sample or two)."""
    lengths = {label: y.size for label, (y, _, _) in signals.items()}
    rates = {sr for (_, sr, _) in signals.values()}
    shortest = min(lengths.values())
    if max(lengths.values()) != shortest:
        # Files at different rates can land a sample apart after resampling; more is a real mismatch.
        if len(rates) == 1 or max(lengths.values()) - shortest > 2:
            detail = ", ".join(
                f"{label} {str(path)!r}: {y.size / _EVAL_SR:.3f} s" for label, (y, _, path) in signals.items()
            )
            raise ValueError(f"files differ in length ({detail}); each enhanced file must be aligned with, "
                             "and as long as, its reference")
    return {label: y[:shortest] for label, (y, _, _) in signals.items()}


def _cmd_evaluate(args):
    from .metrics import evaluate

    n = len(args.enhanced)
    metrics = args.metrics
    if metrics is None:
        metrics = _metric_list(_EVAL_DEFAULT if args.reference is not None else "dnsmos")
    with_reference = [m for m in metrics if m not in _NO_REFERENCE]
    no_reference = [m for m in metrics if m in _NO_REFERENCE]
    if args.reference is None and with_reference:
        raise _CommandError(f"--metrics {','.join(with_reference)} need(s) --reference; without a clean "
                            "reference only dnsmos and pdnsmos apply")
    if args.reference is not None and len(args.reference) != n:
        raise _CommandError(f"{n} ENHANCED file(s) but {len(args.reference)} --reference file(s); give one "
                            "reference per enhanced file, in the same order")
    if args.mixture is not None and len(args.mixture) != n:
        raise _CommandError(f"{n} ENHANCED file(s) but {len(args.mixture)} --mixture file(s)")
    if no_reference:
        from ._dnsmos import _scorer

        _scorer(False)  # a missing extra is said before any file is read
    references = args.reference if args.reference is not None else [None] * n
    mixtures = args.mixture if args.mixture is not None else [None] * n
    records = []
    for enh, ref, mix in zip(args.enhanced, references, mixtures):
        signals = {"enhanced": (*_read_for_eval(enh, args.downmix), enh)}
        if ref is not None:
            signals["reference"] = (*_read_for_eval(ref, args.downmix), ref)
        if mix is not None:
            signals["mixture"] = (*_read_for_eval(mix, args.downmix), mix)
        aligned = _align(signals)
        scores = {}
        if with_reference:
            with warnings.catch_warnings(), _about(enh, ref):
                warnings.simplefilter("ignore", RuntimeWarning)  # PESQ's "no utterance" NaN is reported as null
                scores = evaluate(aligned["enhanced"], aligned["reference"], mixture=aligned.get("mixture"),
                                  sr=_EVAL_SR, metrics=with_reference)
        scores.update(_no_reference_scores(aligned, no_reference, enh, mix))
        records.append({"enhanced": str(enh), "reference": None if ref is None else str(ref),
                        "mixture": None if mix is None else str(mix), **scores})
    columns = []
    for m in metrics:
        names = [f"{m}_{k}" for k in _DNSMOS_KEYS] if m in _NO_REFERENCE else [m]
        for name in names:
            columns += [f"{name}_mixture", name, f"{name}_i"] if args.mixture is not None else [name]
    if args.json:
        clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                 for r in records]
        print(json.dumps(clean, indent=2))
    else:
        print(_table(records, columns))
    return 0


def _no_reference_scores(aligned, metrics, enh, mix):
    """DNSMOS columns (``dnsmos_sig``, ...) of the enhanced file, and of the mixture with its improvement."""
    from ._dnsmos import dnsmos

    scores = {}
    for m in metrics:
        personalized = _NO_REFERENCE[m]
        with _about(enh):
            values = dnsmos(aligned["enhanced"], _EVAL_SR, personalized=personalized)
        scores.update({f"{m}_{k}": v for k, v in values.items()})
        if "mixture" in aligned:
            with _about(mix):
                before = dnsmos(aligned["mixture"], _EVAL_SR, personalized=personalized)
            for k, v in before.items():
                scores[f"{m}_{k}_mixture"] = v
                scores[f"{m}_{k}_i"] = scores[f"{m}_{k}"] - v
    return scores


def _table(records, columns):
    rows = [["file"] + columns]
    for r in records:
        rows.append([r["enhanced"]] + [f"{r[c]:.3f}" for c in columns])
    if len(records) > 1:
        means = []
        for c in columns:
            values = np.array([r[c] for r in records], dtype=np.float64)
            finite = values[np.isfinite(values)]
            means.append(f"{finite.mean():.3f}" if finite.size else "nan")
        rows.append([f"mean of {len(records)}"] + means)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    )


# -- demo ------------------------------------------------------------------------------------------
def _cmd_demo(args):
    from ._demo import run_demo

    run_demo(args.out_dir, speaker=args.speaker, noise_type=args.noise, snr_db=args.snr, random_state=args.seed,
             overwrite=args.overwrite, verbose=True)
    return 0


# -- entry point -----------------------------------------------------------------------------------
def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {message}", file=sys.stderr)


# -- personalize (issue 16; a self-contained block) ------------------------------------------------------
_PERSONALIZE_METHODS = ("pseudo-se", "contrastive", "distill", "extract")


def _add_personalize(sub):
    p = sub.add_parser("personalize", help="adapt the pretrained generalist to one user's noisy recordings",
                       description="Personalize the pretrained neural generalist on your own noisy recordings "
                       "(no clean speech needed; a few seconds of clean speech help 'contrastive') and save the "
                       "adapted model; 'pse-nmf denoise -m MODEL.npz' then uses it. Methods: pseudo-se "
                       "(noisy-target training, with the SNR predictor's purification unless --no-purify), "
                       "contrastive (contrastive mixtures, then fine-tuning on --speech), distill (the "
                       "generalist's own outputs as targets, with added noise), extract (the pretrained speaker "
                       "extractor enrolled with --speech: it keeps your voice and removes other talkers as well as "
                       "noise; no --noisy needed). Needs the neural extra.")
    p.add_argument("--noisy", nargs="+", default=None, metavar="NOISY",
                   help="your noisy recordings: files and/or folders (searched recursively); needed by every "
                   "method but extract")
    p.add_argument("--speech", nargs="+", default=None, metavar="CLEAN",
                   help="a few seconds of your clean speech (contrastive: at least 1 s; extract: the enrollment, "
                   "3 s or more)")
    p.add_argument("--method", choices=_PERSONALIZE_METHODS, default="pseudo-se", help="(default: pseudo-se)")
    p.add_argument("--noise", nargs="+", default=None, metavar="NOISE",
                   help="noise mixed into the recordings while adapting (default: the example noise shipped "
                   "in the package)")
    p.add_argument("--no-purify", action="store_true", help="pseudo-se without the SNR weighting")
    p.add_argument("--teacher", default="generalist", metavar="TEACHER",
                   help="distill: whose outputs the generalist learns from: 'generalist' (itself, the default), "
                   "'rnnoise' (needs pyrnnoise: pip install 'pse-nmf[peers]'), 'generalist+rnnoise' (their "
                   "equal-weight ensemble), or a model file (any fitted pse_nmf model needing no clean speech of "
                   "yours, e.g. a USM); measured in docs/personalization.md: rnnoise +0.25 dB, the ensemble "
                   "+0.21, the generalist itself +0.05 over the generalist")
    p.add_argument("--max-epochs", type=_positive_int, default=None, metavar="N")
    p.add_argument("--seed", type=_non_negative_int, default=0, metavar="N", help="random seed (default 0)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.npz", help="model file to write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    p.set_defaults(handler=_cmd_personalize)


def _personalize_teacher(neural, name):
    """The teacher of ``personalize --method distill`` (checked before any work)."""
    from ._ensemble import EnsembleEnhancer
    from ._rnnoise import RNNoiseEnhancer

    generalist = neural.pretrained("generalist")
    if name == "generalist":
        return generalist
    if name in ("rnnoise", "generalist+rnnoise"):
        rnnoise = RNNoiseEnhancer(sr=generalist.sr).fit()
        if name == "rnnoise":
            return rnnoise
        return EnsembleEnhancer([("generalist", generalist), ("rnnoise", rnnoise)]).fit()
    path = Path(name)
    if not path.is_file():
        raise _CommandError(f"--teacher {name!r} is neither generalist, rnnoise, generalist+rnnoise nor a model file")
    return load_model(path)


def _cmd_personalize(args):
    neural = _neural()
    out = Path(args.output)
    if out.suffix.lower() in AUDIO_EXTENSIONS:
        raise ValueError(f"-o {str(out)!r} has an audio extension; a model file is written there (use .npz)")
    _atomic_target(out, args.overwrite)
    if args.method not in ("contrastive", "extract") and args.speech is not None:
        raise _CommandError(f"--speech is used by --method contrastive and extract only, not {args.method}")
    if args.method == "extract":
        if args.speech is None:
            raise _CommandError("--method extract needs --speech (a few seconds of your clean speech)")
        if args.noisy is not None:
            raise _CommandError("--noisy is not used by --method extract (it enrolls your clean --speech only)")
        for flag, value in (("--noise", args.noise), ("--max-epochs", args.max_epochs)):
            if value is not None:
                raise _CommandError(f"{flag} is not used by --method extract")
    elif args.noisy is None:
        raise _CommandError(f"--method {args.method} needs --noisy (your noisy recordings)")
    if args.method != "distill" and args.teacher != "generalist":
        raise _CommandError(f"--teacher is used by --method distill only, not {args.method}")
    teacher = _personalize_teacher(neural, args.teacher) if args.method == "distill" else None

    def source(items):
        return items[0] if len(items) == 1 else list(items)

    if args.method == "extract":
        t0 = time.perf_counter()
        model = neural.pretrained("extractor").enroll(source(args.speech))
        model.save(out, overwrite=args.overwrite)
        print(f"enrolled {model.enrollment_seconds_:.1f} s of your speech in the speaker extractor in "
              f"{time.perf_counter() - t0:.1f} s -> {out}")
        return 0
    if args.noise is not None:
        noise = source(args.noise)
    else:
        from .datasets import load_example

        noise = load_example().noise
    kw = {"random_state": args.seed}
    if args.max_epochs is not None:
        kw["max_epochs"] = args.max_epochs
    noisy = source(args.noisy)
    import contextlib

    from .neural import _engine

    quiet = _engine.quiet_progress() if args.quiet else contextlib.nullcontext()
    t0 = time.perf_counter()
    with quiet:
        if args.method == "pseudo-se":
            model = neural.PseudoSE(purify=not args.no_purify, **kw).fit(noisy, noise=noise)
        elif args.method == "contrastive":
            speech = None if args.speech is None else source(args.speech)
            model = neural.ContrastiveMixtures(**kw).fit(noisy, speech=speech, noise=noise)
        else:
            model = neural.DistilledStudent(None, teacher, learning_rate=3e-4, batch_size=8, segment_seconds=3.0,
                                            patience=3, validation_fraction=0.2,
                                            **{"max_epochs": 8, **kw}).fit(noisy, noise=noise)
    model.save(out, overwrite=args.overwrite)
    print(f"personalized the generalist ({args.method}) in {time.perf_counter() - t0:.1f} s -> {out}")
    return 0


def main(argv=None):
    """Run the command line interface.

    Parameters
    ----------
    argv : list of str or None
        Arguments without the program name; None reads ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 1 on an error (message on stderr), 2 on a usage error.
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: choose a command: fit, fit-many, train, personalize, denoise, evaluate or demo",
              file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning  # restored by catch_warnings
        try:
            return int(args.handler(args))
        except _CommandError as exc:
            print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except (ValueError, ModelFileError, FileNotFoundError, FileExistsError, OSError, ImportError) as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
