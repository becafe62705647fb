"""MkDocs hook: serve MathJax from the built site, so the math renders without a network.

MathJax 3.2.2 comes from the ``django-static-mathjax`` wheel (Apache-2.0; it
installs the plain MathJax distribution as the ``mathjax`` package's static
files and needs nothing from Django). After the build this copies the
``tex-chtml`` bundle and the parts it loads on demand (CHTML fonts, TeX
extensions, menu, accessibility) into ``<site>/javascripts/mathjax/``;
``mkdocs.yml`` loads ``javascripts/mathjax/tex-chtml.js`` after the
configuration in ``docs/javascripts/mathjax.js``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mkdocs.exceptions import PluginError

#: What the TeX-input, CHTML-output page needs of MathJax's ``es5`` folder (about 8 MB of its 24).
_PARTS = ("tex-chtml.js", "input/tex", "output/chtml", "output/chtml.js", "ui", "a11y", "sre", "adaptors")


def _es5():
    try:
        import mathjax
    except ImportError as exc:
        raise PluginError('MathJax for the offline site comes from django-static-mathjax: '
                          'pip install -e ".[docs]"') from exc
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        raise PluginError(f"no MathJax bundle at {es5} (django-static-mathjax incomplete?)")
    return es5


def on_config(config, **kwargs):
    _es5()  # fail before the build, not after it
    return config


def on_post_build(config, **kwargs):
    es5 = _es5()
    target = Path(config["site_dir"]) / "javascripts" / "mathjax"
    for part in _PARTS:
        src, dst = es5 / part, target / part
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        elif src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    shutil.copy2(es5.parent / "LICENSE", target / "LICENSE")
