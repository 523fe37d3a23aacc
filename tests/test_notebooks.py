"""The notebooks (``notebooks/chXX.ipynb``): they run top to bottom with a real Jupyter
kernel, the committed copies hold the outputs of one run in order, and they name no path
of the machine they were run on.

Each notebook is executed in a temporary copy (the committed file is never modified),
with the ``python3`` kernel of the running interpreter (ipykernel), one timeout per cell;
any error fails the test. After editing a notebook, re-run it from the top and save
(Jupyter: "Restart Kernel and Run All Cells"; or ``jupyter nbconvert --to notebook
--execute --inplace notebooks/chXX.ipynb``).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs nbformat (pip install -e '.[test]')")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("ch*.ipynb"))
CELL_TIMEOUT_S = 300  # per cell; the longest cells take ~15 s on 2 busy CPU cores

needs_notebooks = pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks/ch*.ipynb found")


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _output_kinds(cell) -> list[tuple[str, ...]]:
    """What a cell printed or displayed, without the values (timings differ run to run):
    ``("stream", "stdout")``, ``("display_data", "image/png", "text/plain")``, ..."""
    kinds = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            kinds.append(("stream", out.name))
        elif out.output_type in ("display_data", "execute_result"):
            kinds.append((out.output_type, *sorted(out.get("data", {}))))
        else:
            kinds.append((out.output_type,))
    # Consecutive prints to one stream may arrive as one output or several.
    return [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1] or k[0] != "stream"]


def _needs_dot(nb) -> bool:
    """A notebook that draws graphs (``graph.render``; then its graphs also show as SVG)
    needs Graphviz's ``dot``; one that only prints graph tables does not."""
    return any(".render(" in c.source for c in _code_cells(nb))


def test_there_are_notebooks_for_chapters_2_to_6():
    names = {p.stem for p in NOTEBOOKS}
    assert {"ch02", "ch03", "ch04", "ch05", "ch06"} <= names, sorted(names)


# --------------------------------------------------------------------------------------
# The committed notebooks, as files


@needs_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_was_run_top_to_bottom(path: Path):
    nb = _read(path)
    nbformat.validate(nb)
    assert _code_cells(nb), f"{path.name} has no code cells"
    problems = _run_order_problems(nb)
    assert not problems, f"{path.name}: " + "; ".join(problems)


def _run_order_problems(nb) -> list[str]:
    """What shows that ``nb`` was not saved right after one run from the top: execution
    counts other than 1, 2, 3, ... (a cell skipped, run twice or out of order), an error
    output, or a result stamped with another count."""
    cells = _code_cells(nb)
    counts = [c.execution_count for c in cells]
    problems = []
    if counts != list(range(1, len(cells) + 1)):
        problems.append(
            f"execution counts {counts}: run every cell once, from the top, in a fresh "
            "kernel, and save"
        )
    for i, cell in enumerate(cells, 1):
        if any(o.output_type == "error" for o in cell.outputs):
            problems.append(f"code cell {i} was saved with an error")
        results = [o for o in cell.outputs if o.output_type == "execute_result"]
        if any(o.execution_count != cell.execution_count for o in results):
            problems.append(f"code cell {i} holds the result of another run")
    return problems


def _synthetic(counts: list[int | None], result_counts: list[int | None]):
    nb = nbformat.v4.new_notebook()
    for count, result in zip(counts, result_counts, strict=True):
        cell = nbformat.v4.new_code_cell("1 + 1", execution_count=count)
        if result is not None:
            cell.outputs = [
                nbformat.v4.new_output(
                    "execute_result", data={"text/plain": "2"}, execution_count=result
                )
            ]
        nb.cells.append(cell)
    return nb


@pytest.mark.parametrize(
    "counts, results, problem",
    [
        ([1, 2, 3], [1, None, 3], None),
        ([1, 3, 4], [1, None, 4], "execution counts [1, 3, 4]"),  # a cell run twice
        ([2, 1], [2, 1], "execution counts [2, 1]"),  # run out of order
        ([1, None], [1, None], "execution counts [1, None]"),  # a cell never run
        ([1, 2], [1, 5], "code cell 2 holds the result of another run"),
    ],
)
def test_run_order_check_finds_stale_notebooks(counts, results, problem):
    problems = _run_order_problems(_synthetic(counts, results))
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def _shows_something(source: str) -> bool:
    """Whether running this cell prints or displays something: it calls print, display or
    plt.show, or it ends in an expression (IPython shows its value)."""
    if any(word in source for word in ("print(", "plt.show(", "display(")):
        return True
    body = ast.parse(source).body
    return bool(body) and isinstance(body[-1], ast.Expr)


@needs_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_cells_that_show_something_have_outputs(path: Path):
    """A cell added or edited after the run, and not run again, has no outputs."""
    for i, cell in enumerate(_code_cells(_read(path)), 1):
        if _shows_something(cell.source):
            assert cell.outputs, f"{path.name}: code cell {i} shows something but has no output"


def test_shows_something_reads_the_cell():
    assert _shows_something("x = 1\nx")
    assert _shows_something("for i in range(2):\n    print(i)")
    assert not _shows_something("import jax\nx = jax.numpy.zeros(3)")


def _machine_paths() -> list[str]:
    """Absolute paths that would only make sense on the machine that ran the notebook."""
    found = {str(ROOT), str(Path.home()), sys.prefix, os.path.realpath(tempfile.gettempdir())}
    return sorted(p for p in found if len(p) > 1)


# Home and temporary folders of any machine: /home/NAME/, /Users/NAME/, /root/, /tmp/...
ABSOLUTE_PATH = re.compile(
    r"(?<![\w.:/])(/home/\w|/Users/\w|/root/|/tmp/|/private/var/|/var/folders/|[A-Z]:\\\\Users)"
)


@needs_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_holds_no_absolute_paths_of_this_machine(path: Path):
    text = path.read_text(encoding="utf-8")
    for p in _machine_paths():
        assert p not in text, f"{path.name} contains the path {p!r}"
    m = ABSOLUTE_PATH.search(text)
    where = text[m.start() : m.start() + 60] if m else ""
    assert m is None, f"{path.name} contains an absolute path: ...{where!r}"


def test_absolute_path_check_finds_such_paths():
    assert ABSOLUTE_PATH.search('"wrote /home/alice/funcnet/runs/x.png"')
    assert ABSOLUTE_PATH.search("File /tmp/funcnet-ch05-abc/loss.png")
    assert not ABSOLUTE_PATH.search("http://www.w3.org/2000/svg and runs/ch05/loss.png")


def test_output_kinds_ignore_how_prints_were_split():
    cell = nbformat.v4.new_code_cell("print(1); print(2)")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="1\n"),
        nbformat.v4.new_output("stream", name="stdout", text="2\n"),
        nbformat.v4.new_output("display_data", data={"image/png": "", "text/plain": ""}),
    ]
    want = [("stream", "stdout"), ("display_data", "image/png", "text/plain")]
    assert _output_kinds(cell) == want


# --------------------------------------------------------------------------------------
# Executing them with a real kernel


def _execute(nb, cwd: Path):
    """Run ``nb`` in place with the ``python3`` kernel in the folder ``cwd``; raises
    ``nbclient.exceptions.CellExecutionError`` (naming the cell) on any error."""
    nbclient = pytest.importorskip("nbclient", reason="needs nbclient (pip install -e '.[test]')")
    pytest.importorskip("ipykernel", reason="needs ipykernel (pip install -e '.[test]')")
    nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=120,
        kernel_name="python3",
        allow_errors=False,
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    ).execute()


def test_execution_fails_on_an_error_in_any_cell(tmp_path: Path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("x / 0")]
    with pytest.raises(Exception, match="ZeroDivisionError"):
        _execute(nb, tmp_path)
    assert nb.cells[0].execution_count == 1


@needs_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom_with_a_jupyter_kernel(
    path: Path, tmp_path: Path, tmp_path_factory, monkeypatch
):
    # The kernel compiles many programs twice (the same layer in a new function): a
    # persistent compilation cache of its own, outside the working folder, skips the
    # second compilation. The kernel inherits it from this environment.
    cache = tmp_path_factory.mktemp("kernel-jax-cache")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(cache))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    committed = _read(path)
    if _needs_dot(committed) and shutil.which("dot") is None:
        pytest.skip(f"{path.name} draws graphs: needs Graphviz's dot (apt-get install graphviz)")
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    nb = _read(copy)
    t0 = time.perf_counter()
    _execute(nb, tmp_path)
    print(f"{path.name}: executed in {time.perf_counter() - t0:.1f} s")

    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], (
        f"{path.name} wrote into its working folder: notebooks write under a temporary folder"
    )
    fresh, saved = _code_cells(nb), _code_cells(committed)
    assert [c.source for c in fresh] == [c.source for c in saved]
    for i, (new, old) in enumerate(zip(fresh, saved, strict=True), 1):
        assert _output_kinds(new) == _output_kinds(old), (
            f"{path.name}: code cell {i} now shows {_output_kinds(new)}, the committed "
            f"notebook {_output_kinds(old)}: re-run the notebook and save it"
        )
