"""Execute a notebook of ``notebooks/`` headlessly, as the test suite does.

``run_notebook("01_convolution.ipynb", tmp_path)`` runs every cell top to
bottom with a real Jupyter kernel (nbclient), in fast mode (``MINILENET_FAST=1``:
a small subset of MNIST and short runs), with ``tmp_path`` as the working
folder. ``prelude`` is code run as an extra first cell: the tests use it to
break a layer and check that the notebook then fails. A failing cell raises
``nbclient.exceptions.CellExecutionError``.
"""
import os
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def notebook_paths():
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def run_notebook(name, workdir, prelude=None, timeout=900, folder=NOTEBOOKS):
    """Run ``folder/name`` in ``workdir`` (whose ``minilenet``, if it holds one, is the
    one the kernel imports: a student copy, say); returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(Path(folder) / name, as_version=4)
    if prelude:
        nb.cells.insert(0, nbformat.v4.new_code_cell(prelude))
    env_before = os.environ.get("MINILENET_FAST")
    os.environ["MINILENET_FAST"] = "1"          # the kernel inherits the environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        if env_before is None:
            del os.environ["MINILENET_FAST"]
        else:
            os.environ["MINILENET_FAST"] = env_before
    return nb
