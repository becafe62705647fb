"""pse_nmf without torch: the core never imports it; pse_nmf.neural says what to install.

Each test runs a fresh interpreter. "No torch" is simulated with an import
hook that refuses ``torch`` the way a missing package does (setting
``sys.modules['torch'] = None`` is not usable: SciPy's array-API helpers look
``torch`` up in ``sys.modules`` and fail on None).
"""

import subprocess
import sys
import textwrap

import pytest

_HIDE_TORCH = textwrap.dedent(
    """
    import sys

    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NoTorch())
    """
)


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_pse_nmf_does_not_import_torch():
    proc = _run("import sys, pse_nmf; print('torch' in sys.modules)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_pse_nmf_works_without_torch():
    proc = _run(_HIDE_TORCH + "import pse_nmf; print(pse_nmf.SemiSupervisedNMF().get_params()['n_fft'])")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().isdigit()


def test_neural_without_torch_says_what_to_install():
    code = _HIDE_TORCH + textwrap.dedent(
        """
        try:
            import pse_nmf.neural
        except ImportError as exc:
            print("ImportError:", exc)
        else:
            print("imported")
        """
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ImportError:")
    assert 'pip install "pse_nmf[neural]"' in proc.stdout


def test_loading_a_neural_model_without_torch_says_what_to_install(tmp_path, example):
    pytest.importorskip("torch")
    import warnings

    from pse_nmf.neural import GRUEnhancer

    speech = example.speech[sorted(example.speech)[0]][0][:16000]
    noise = example.noise[sorted(example.noise)[0]][0]
    model = GRUEnhancer(hidden_size=4, num_layers=1, max_epochs=1, n_fft=256, hop_length=128,
                        validation_fraction=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one epoch: ConvergenceWarning
        path = model.fit([speech], [noise]).save(tmp_path / "gru.npz")
    proc = _run(_HIDE_TORCH + f"import pse_nmf\ntry:\n    pse_nmf.load({str(path)!r})\n"
                "except ImportError as exc:\n    print('ImportError:', exc)\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ImportError:")
    assert 'pip install "pse_nmf[neural]"' in proc.stdout


def test_every_neural_estimator_loads_without_importing_the_subpackage_first():
    # pse_nmf.load finds estimators of the optional subpackage through a fixed table; one missing
    # from it is an "unknown model kind" for users who did not import pse_nmf.neural themselves.
    pytest.importorskip("torch")
    code = (
        "import pse_nmf._persistence as p\n"
        "core = set(p._REGISTRY)\n"
        "import pse_nmf.neural\n"
        "added = set(p._REGISTRY) - core\n"
        "missing = sorted(n for n in added if p._OPTIONAL_ESTIMATORS.get(n) != 'pse_nmf.neural')\n"
        "assert added, 'pse_nmf.neural registered nothing'\n"
        "print(missing)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
