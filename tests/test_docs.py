"""The documentation site builds with warnings as errors (mkdocs --strict), as the README says."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_gives_the_docs_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- docs-command -->\s*```sh\n(.*?)\n```", readme, re.S)
    assert block is not None and block.group(1).strip() == 'pip install -e ".[docs]" && mkdocs build --strict'


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocs_jupyter")
    site = tmp_path / "site"
    before = sorted(p.name for p in ROOT.iterdir())
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in ROOT.iterdir()) == before  # the build writes nothing into the checkout
    api = (site / "api" / "functions" / "index.html").read_text(encoding="utf-8")
    for name in ("pse_nmf.denoise_files", "pse_nmf.fit_many", "pse_nmf.metrics.dnsmos",
                 "pse_nmf.datasets.mix_at_snr"):
        assert f'id="{name}"' in api
    estimators = (site / "api" / "estimators" / "index.html").read_text(encoding="utf-8")
    assert 'id="pse_nmf.SemiSupervisedNMF"' in estimators and "n_noise_components" in estimators
    for nb in sorted((ROOT / "docs" / "notebooks").glob("*.ipynb")):
        page = site / "notebooks" / nb.stem / "index.html"
        assert page.is_file(), f"{nb.name} not rendered"
    getting_started = (site / "getting-started" / "index.html").read_text(encoding="utf-8")
    assert "Run the demo" in getting_started and "Run the tests" in getting_started  # the README two commands
