"""The teaching notebooks in docs/notebooks execute from top to bottom, offline, on the example data.

Each runs in a fresh Jupyter kernel (nbclient + ipykernel, from the dev extra),
with one BLAS thread (the machines are small and shared) and the network
closed: a notebook that tries to connect anywhere fails. The notebooks are
stored without outputs; this test does not write them back.
"""

import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "docs" / "notebooks").glob("*.ipynb"))

# Put at the top of each kernel: no connection leaves the machine (loopback stays open for the kernel).
_NO_NETWORK = """
import socket as _socket
_connect = _socket.socket.connect
def _guarded(self, address, *a, **k):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1")):
        raise OSError(f"the notebook tried to reach {address!r}: notebooks must run offline")
    return _connect(self, address, *a, **k)
_socket.socket.connect = _guarded
"""


def test_there_are_five_notebooks():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(path, as_version=4)
    if "pse_nmf.neural" in "".join(c.source for c in nb.cells):
        pytest.importorskip("torch")
    nb.cells.insert(0, nbformat.v4.new_code_cell(_NO_NETWORK))
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "1")
    # the kernel imports this checkout's pse_nmf, installed or not
    root = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert list(tmp_path.iterdir()) == []  # a notebook writes nothing into its working folder
