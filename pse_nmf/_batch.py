"""Many files, many speakers: :func:`denoise_files` and :func:`fit_many`, in parallel through joblib.

The work goes through :class:`joblib.Parallel`, so whatever joblib backend
is active runs it: local processes (``n_jobs=2``), or a Dask cluster
(``with joblib.parallel_config(backend="dask"): ...``, after creating a
``dask.distributed.Client``). Each file (each speaker) is one task; a task
that fails is reported in its record and the others go on. Outputs are
written by the tasks themselves, atomically and created exclusively (see
:func:`pse_nmf.write_audio`), so a failure or an interruption never leaves a
partial file, and an output that appeared meanwhile is never replaced
without ``overwrite``.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from pathlib import Path

__all__ = ["denoise_files", "fit_many"]


# -- output planning (shared with the command line) -------------------------------------------------
def _same_file(a, b):
    """True if paths ``a`` and ``b`` name the same file (links and symlinks included)."""
    try:
        if Path(a).resolve() == Path(b).resolve():
            return True
    except OSError:
        pass
    try:
        return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _writable_ext(ext):
    import soundfile as sf

    return ext.startswith(".") and ext[1:].upper() in sf.available_formats()


def _output_name(inp, suffix):
    ext = inp.suffix if _writable_ext(inp.suffix) else ".wav"
    return f"{inp.stem}{suffix}{ext}"


def _check_plan(inputs, outputs, overwrite, protected=()):
    """Refuse, before any work, outputs that are inputs, collide, or exist (without ``overwrite``)."""
    for out in outputs:
        for other in list(inputs) + list(protected):
            if _same_file(out, other):
                kind = "an input file" if other in inputs else "the model file"
                raise ValueError(f"output {str(out)!r} is {kind} ({str(other)!r}); pse_nmf never overwrites "
                                 "it, even with overwrite (--overwrite): choose another output folder or suffix")
    resolved = [Path(out).resolve() for out in outputs]
    if len(set(resolved)) != len(resolved):
        raise ValueError("several inputs would be written to the same output (same file names?); "
                         "write them to separate folders")
    if not overwrite:
        existing = [str(out) for out in outputs if Path(out).exists()]
        if existing:
            raise FileExistsError(f"output(s) exist: {', '.join(existing)}; pass overwrite=True "
                                  "(CLI: --overwrite) to replace them")


# -- progress and parallel map ----------------------------------------------------------------------
def _progress_bar(total, desc, progress):
    """A tqdm bar; ``progress=None`` shows it only on a terminal (tqdm's ``disable=None``)."""
    try:
        from tqdm import tqdm  # the text bar (tqdm.auto wants ipywidgets in notebooks)
    except ImportError:  # tqdm is a dependency, but a bar is not worth failing for
        return None
    disable = None if progress is None else not progress
    return tqdm(total=total, desc=desc, unit="file" if desc == "denoise" else "speaker", disable=disable,
                leave=False, dynamic_ncols=True)


def _parallel_map(function, tasks, *, n_jobs, desc, progress):
    """``[function(*task) for task in tasks]`` through joblib, in order, with a progress bar."""
    from joblib import Parallel, delayed

    bar = _progress_bar(len(tasks), desc, progress)
    results = []
    try:
        # return_as="generator": results arrive in order as they finish, for the bar
        for record in Parallel(n_jobs=n_jobs, return_as="generator")(delayed(function)(*t) for t in tasks):
            results.append(record)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results


def _run_task(kind, name, work):
    """Run ``work()``; a record with its result or its error, the warnings it raised, its time.

    The task runs with one BLAS / OpenMP thread, whatever ``n_jobs``: a matrix product's rounding depends on
    how many threads share it, so this is what makes a file's output the same in the serial run, in loky's
    workers (which joblib limits to ``cores // n_jobs`` threads) and on Dask workers; the parallelism of many
    files comes from the processes.
    """
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    record = {kind: name, "ok": True, "error": None, "warnings": []}
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1):
        warnings.simplefilter("always")
        try:
            record.update(work())
        except Exception as exc:  # one bad file is reported; the others go on
            record["ok"] = False
            message = str(exc)
            record["error"] = message if str(name) in message else f"{str(name)!r}: {message}"
    record["warnings"] = [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
    record["seconds"] = time.perf_counter() - t0
    return record


# -- denoise ---------------------------------------------------------------------------------------
def _denoise_one(model, inp, out, overwrite, downmix, stream, block_size):
    def work():
        import soundfile as sf

        from .audio._io import read_audio, write_audio

        if stream:
            model.denoise_file(inp, out, block_size=block_size, overwrite=overwrite, downmix=downmix)
            return {"output": str(out), "audio_seconds": sf.info(str(inp)).duration}
        noisy, sr = read_audio(inp, sr=None, downmix=downmix)
        # a copy: a threaded backend (Dask workers run tasks in threads) shares the objects it is given
        enhanced = copy.deepcopy(model).denoise(noisy, sr=sr)
        subtype = sf.info(str(inp)).subtype
        if not sf.check_format(Path(out).suffix[1:].upper(), subtype):
            subtype = None  # the output format's default
        write_audio(out, enhanced, sr, subtype=subtype, overwrite=overwrite)
        return {"output": str(out), "audio_seconds": noisy.size / sr}

    record = _run_task("input", str(inp), work)
    record.setdefault("output", None if not record["ok"] else str(out))
    return record


def _denoise_planned(model, inputs, outputs, *, n_jobs=None, overwrite=False, downmix=False, stream=False,
                     block_size=65536, progress=None):
    """Denoise ``inputs[i]`` into ``outputs[i]`` (paths checked by the caller); the records."""
    from .audio._io import _atomic_target

    for out in outputs:  # a read-only folder or a folder in the way: said now, not after the work
        _atomic_target(out, overwrite)
    tasks = [(model, Path(i), Path(o), overwrite, downmix, stream, block_size) for i, o in zip(inputs, outputs)]
    return _parallel_map(_denoise_one, tasks, n_jobs=n_jobs, desc="denoise", progress=progress)


def _streaming_model(model):
    """An OnlineNMF to stream with: ``model`` itself, or one built on a fitted speech model's dictionary."""
    from ._persistence import ModelFileError
    from .decomposition._online import OnlineNMF

    if isinstance(model, OnlineNMF):
        return model
    if getattr(model, "known", "speech") != "speech" or not hasattr(model, "components_"):
        raise ModelFileError(f"{type(model).__name__} has no speech dictionary for streaming")
    return OnlineNMF(speech_model=model, sr=model.sr, n_fft=model.n_fft, hop_length=model.hop_length,
                     random_state=0).fit()


def _audio_inputs(inputs):
    from .audio._io import AUDIO_EXTENSIONS

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                raise FileNotFoundError(f"no audio files in folder {str(path)!r}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no audio file at {str(path)!r}")
    if not files:
        raise ValueError("inputs is empty: no audio files to denoise")
    return files


def denoise_files(model, inputs, out_dir=None, *, suffix="_enhanced", n_jobs=None, overwrite=False,
                  downmix=False, stream=False, block_size=65536, progress=None):
    """Enhance many audio files, in parallel, each output written atomically.

    Each file is one joblib task: ``n_jobs`` local processes, or, inside
    ``joblib.parallel_config(backend="dask")`` with a
    ``dask.distributed.Client``, the workers of a Dask cluster (which must
    see the same paths). The outputs are those of a serial run, sample for
    sample: every file is denoised with one BLAS thread, in the serial run
    too (a product's rounding depends on how many threads share it). A
    file that fails (unreadable, too short, ...) is reported in its record
    and does not stop the others.

    Parameters
    ----------
    model : fitted estimator with ``denoise``
        Any pse_nmf enhancer (a model from :func:`pse_nmf.load`, or
        ``pse_nmf.neural.pretrained()``).
    inputs : str, path-like or sequence of them
        Noisy audio files; a folder stands for the audio files under it
        (recursively, sorted).
    out_dir : str, path-like or None
        Folder for the outputs (created if missing); None writes each output
        beside its input.
    suffix : str, default="_enhanced"
        Added to each input's stem to name its output; the input's format is
        kept when soundfile writes it, else ``.wav``.
    n_jobs : int or None
        Parallel tasks, as in joblib: None means 1 unless a
        ``joblib.parallel_config`` context says otherwise, -1 all cores.
    overwrite : bool, default=False
        Replace existing outputs (never an input). Without it, existing
        outputs are refused before any work.
    downmix : bool, default=False
        Average the channels of multichannel files (refused otherwise).
    stream : bool, default=False
        Enhance block-wise in constant memory with an
        :class:`~pse_nmf.OnlineNMF` (``model`` itself, or one on ``model``'s
        speech dictionary), as ``pse-nmf denoise --stream``.
    block_size : int, default=65536
        Samples read per block when streaming.
    progress : bool or None
        Show a progress bar; None shows it only on a terminal.

    Returns
    -------
    records : list of dict
        One per input, in order: ``input``, ``output``, ``ok``, ``error``
        (the message, or None), ``warnings`` (messages raised while
        enhancing), ``audio_seconds`` and ``seconds`` (wall time of the task).

    Raises
    ------
    FileNotFoundError, FileExistsError, ValueError
        Before any work: missing inputs, outputs that exist (without
        ``overwrite``), are inputs, or collide.

    See Also
    --------
    fit_many : one model per speaker folder, in parallel.

    Examples
    --------
    >>> import joblib                                                    # doctest: +SKIP
    >>> records = denoise_files(model, "calls/", "enhanced/", n_jobs=2)   # doctest: +SKIP
    >>> from dask.distributed import Client                              # doctest: +SKIP
    >>> with Client("tcp://scheduler:8786"), joblib.parallel_config(backend="dask"):  # doctest: +SKIP
    ...     records = denoise_files(model, "calls/", "enhanced/")        # doctest: +SKIP
    """
    if not hasattr(model, "denoise"):
        raise TypeError(f"model must be a fitted enhancer with a denoise method, got {type(model).__name__}")
    if "/" in suffix or os.sep in suffix:
        raise ValueError(f"suffix {suffix!r} contains a path separator; use out_dir for another folder")
    files = _audio_inputs(inputs)
    if out_dir is None:
        outputs = [f.with_name(_output_name(f, suffix)) for f in files]
    else:
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise NotADirectoryError(f"out_dir {str(out_dir)!r} is a file, not a folder")
        outputs = [out_dir / _output_name(f, suffix) for f in files]
    _check_plan(files, outputs, overwrite)
    if stream:
        model = _streaming_model(model)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    return _denoise_planned(model, files, outputs, n_jobs=n_jobs, overwrite=overwrite, downmix=downmix,
                            stream=stream, block_size=block_size, progress=progress)


# -- fit many --------------------------------------------------------------------------------------
def _fit_one(estimator, name, source, out, overwrite, downmix):
    def work():
        from sklearn.base import clone

        model = clone(estimator)
        model.fit(source, downmix=downmix)
        model.save(out, overwrite=overwrite)
        return {"output": str(out)}

    record = _run_task("speaker", name, work)
    record.setdefault("output", None)
    return record


def _speaker_sources(speakers):
    """``{name: source}`` from a folder of speaker folders or a mapping."""
    if isinstance(speakers, dict):
        if not speakers:
            raise ValueError("speakers is empty")
        return {str(k): v for k, v in speakers.items()}
    root = Path(speakers)
    if not root.is_dir():
        raise FileNotFoundError(f"speakers: no folder at {str(root)!r}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"speakers: {str(root)!r} has no speaker folders (one sub-folder per speaker)")
    return {p.name: p for p in folders}


def fit_many(estimator, speakers, out_dir, *, n_jobs=None, overwrite=False, downmix=False, progress=None):
    """Fit one model per speaker, in parallel, and save each as ``out_dir/<speaker>.npz``.

    Each speaker is one joblib task on a clone of ``estimator`` (see
    :func:`denoise_files` for backends, Dask included). A speaker whose fit
    fails (too little speech, unreadable files, ...) is reported in its
    record; the others go on. Models are those of serial fits (set
    ``random_state`` for repeatable ones).

    Parameters
    ----------
    estimator : unfitted estimator
        The template, e.g. ``SemiSupervisedNMF(random_state=0)``; cloned per
        speaker.
    speakers : str, path-like or dict
        A folder holding one sub-folder of clean recordings per speaker, or
        ``{speaker: source}`` with any source ``estimator.fit`` takes (a
        folder, files, waveforms).
    out_dir : str or path-like
        Folder for the model files (created if missing).
    n_jobs : int or None
        Parallel tasks, as in joblib (None: 1 unless a
        ``joblib.parallel_config`` context says otherwise).
    overwrite : bool, default=False
        Replace existing model files; without it they are refused before any
        work.
    downmix : bool, default=False
        Average the channels of multichannel files.
    progress : bool or None
        Show a progress bar; None shows it only on a terminal.

    Returns
    -------
    records : list of dict
        One per speaker, sorted by name: ``speaker``, ``output``, ``ok``,
        ``error``, ``warnings``, ``seconds``.

    Examples
    --------
    >>> from pse_nmf import SemiSupervisedNMF                                    # doctest: +SKIP
    >>> fit_many(SemiSupervisedNMF(random_state=0), "speakers/", "models/", n_jobs=2)  # doctest: +SKIP
    """
    from .audio._io import _atomic_target

    if not hasattr(estimator, "fit") or not hasattr(estimator, "save"):
        raise TypeError(f"estimator must be a pse_nmf estimator (fit and save), got {type(estimator).__name__}")
    sources = _speaker_sources(speakers)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"out_dir {str(out_dir)!r} is a file, not a folder")
    outputs = {name: out_dir / f"{name}.npz" for name in sources}
    if not overwrite:
        existing = [str(p) for p in outputs.values() if p.exists()]
        if existing:
            raise FileExistsError(f"model file(s) exist: {', '.join(existing)}; pass overwrite=True "
                                  "(CLI: --overwrite) to replace them")
    out_dir.mkdir(parents=True, exist_ok=True)
    for out in outputs.values():
        _atomic_target(out, overwrite)
    tasks = [(estimator, name, sources[name], outputs[name], overwrite, downmix) for name in sorted(sources)]
    return _parallel_map(_fit_one, tasks, n_jobs=n_jobs, desc="fit", progress=progress)
