"""The benchmarks' one progress helper (benchmarks/_common.py): quiet off a terminal and with --quiet.

Reaches into benchmarks/ by path: the benchmarks are scripts, not a package.
"""

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _common(monkeypatch):
    spec = importlib.util.spec_from_file_location("_bench_common", ROOT / "benchmarks" / "_common.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_progress_is_quiet_off_a_terminal_and_with_quiet(monkeypatch):
    common = _common(monkeypatch)
    items = [1, 2, 3]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert common.progress(items, "targets") is items
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert common.progress(items, "targets", quiet=True) is items
    bar = common.progress(items, "targets")
    try:
        assert bar is not items and list(bar) == items
    finally:
        bar.close()


def test_every_benchmark_uses_the_one_helper():
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        if path.name == "_common.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from tqdm|import tqdm)", text, re.M), f"{path.name} imports tqdm itself"
        assert "def _progress" not in text, path.name
