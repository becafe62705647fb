"""The documentation site builds with warnings as errors (mkdocs --strict), as the README says."""

import importlib.util
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


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built once for this module (``mkdocs build --strict`` into a temporary folder)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocs_jupyter")
    pytest.importorskip("mathjax")  # django-static-mathjax: the offline MathJax
    site = tmp_path_factory.mktemp("docs") / "site"
    before = sorted(p.name for p in ROOT.iterdir())
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in ROOT.iterdir()) == before  # the build writes nothing into the checkout
    return site


def test_docs_build_strict(site):
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



def test_api_pages_render_the_numpydoc_math(site):
    # The docstrings stay numpydoc/reST; docs/_hooks/numpydoc_markup.py hands arithmatex their math.
    for page in ("estimators", "functions", "neural"):
        html = (site / "api" / page / "index.html").read_text(encoding="utf-8")
        for raw in (".. math::", ":math:`", ".. [1]", ":class:", ":doi:`"):
            assert raw not in html, (page, raw)
    estimators = (site / "api" / "estimators" / "index.html").read_text(encoding="utf-8")
    assert '<div class="arithmatex">\\[\nD_\\beta(X \\,|\\, A D)' in estimators  # BetaNMF's objective
    assert '<span class="arithmatex">\\(M = S^p / (S^p + N^p)\\)</span>' in estimators  # a :math: role
    assert "<li>[1] C. Févotte and J. Idier," in estimators  # a reference entry, one list item
    functions = (site / "api" / "functions" / "index.html").read_text(encoding="utf-8")
    assert '<div class="arithmatex">\\[\n\\mathrm{SI\\text{-}SDR}' in functions  # content on the directive line


def test_math_is_served_by_the_site(site):
    # MathJax is copied from the django-static-mathjax wheel: pages load nothing from a CDN.
    html = (site / "api" / "estimators" / "index.html").read_text(encoding="utf-8")
    assert 'src="../../javascripts/mathjax/tex-chtml.js"' in html
    assert (site / "javascripts" / "mathjax" / "tex-chtml.js").is_file()
    assert any((site / "javascripts" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r'(src|href)="https://(cdn\.|fonts\.googleapis)', text), page


def test_rest_to_markdown():
    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location("numpydoc_markup", ROOT / "docs" / "_hooks" / "numpydoc_markup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = """Objective

.. math::

    a + b
    = c

    d = e

with :math:`x_t` and :class:`~pse_nmf.USM` [1]_.

.. math:: f = g
          + h

References
----------
.. [1] A. Author, "Title",
   2011. :doi:`10.1/x`
"""
    assert module.rest_to_markdown(text) == """Objective

$$
a + b
= c
$$

$$
d = e
$$

with $x_t$ and `USM` \\[1\\].

$$
f = g
+ h
$$

References
----------
- \\[1\\] A. Author, "Title", 2011. [doi:10.1/x](https://doi.org/10.1/x)"""
