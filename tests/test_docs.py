"""The documentation site (``mkdocs.yml``, ``docs/``) and the README.

- the site builds with ``mkdocs build --strict``: a broken link or anchor, a page missing
  from the navigation, a reference mkdocstrings cannot resolve or a docstring griffe
  cannot read fails the build;
- every Python code block of every page (and of the README) runs, the blocks of one page
  in order in one fresh interpreter, in an empty temporary folder (so a snippet that
  writes a file never writes into the repository);
- every picture a page shows exists, is listed in ``docs/img/figures.json`` with the
  experiment that draws it, and is what that experiment draws now (drawn again and
  compared) or, for the few that take minutes or full-size data, still written by that
  experiment under that name and unchanged since it was recorded.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
IMG = DOCS / "img"
MANIFEST = json.loads((IMG / "figures.json").read_text())
FIGURES = {k: v for k, v in MANIFEST.items() if not k.startswith("_")}
# Every page whose code blocks are run: the site's and the README.
PAGES = sorted(p for p in DOCS.rglob("*.md") if "notebooks" not in p.relative_to(DOCS).parts)
PAGES.append(ROOT / "README.md")
BUILD_TIMEOUT_S = 600
BLOCK_TIMEOUT_S = 600

_FENCE = re.compile(r"^( *)```python\n(.*?)^\1```", re.M | re.S)
_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of a Markdown text, dedented to their fence's indent."""
    blocks = []
    for m in _FENCE.finditer(text):
        indent = len(m[1])
        blocks.append("".join(line[indent:] for line in m[2].splitlines(keepends=True)))
    return blocks


def test_python_blocks_finds_fenced_and_indented_blocks():
    text = (
        "a\n```python\nx = 1\n```\n\n- item\n\n    ```python\n    y = 2\n    ```\n"
        "```bash\nls\n```\n"
    )
    assert python_blocks(text) == ["x = 1\n", "y = 2\n"]


# --------------------------------------------------------------------------------------
# The build


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """``mkdocs build --strict`` into a temporary folder; fails with mkdocs' warnings."""
    out = tmp_path_factory.mktemp("site")
    work = tmp_path_factory.mktemp("build")  # mkdocs-jupyter keeps a .cache/ in the cwd
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(out)],
        cwd=work, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    problems = [ln for ln in proc.stderr.splitlines() if not ln.startswith("INFO")]
    assert proc.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(problems)
    return out


def test_site_builds_strictly_with_every_page(site):
    built = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    for page in DOCS.rglob("*.md"):
        rel = page.relative_to(DOCS).with_suffix("")
        url = (
            "index.html"
            if rel.name == "index" and rel.parent == Path(".")
            else ((rel.parent / "index.html") if rel.name == "index" else rel / "index.html")
        )
        assert Path(url).as_posix() in built, f"{page.relative_to(ROOT)} was not built"
    for nb in sorted((ROOT / "notebooks").glob("ch*.ipynb")):
        html = site / "notebooks" / nb.stem / "index.html"
        assert html.exists(), f"{nb.name} is not rendered on the site"
        # the committed outputs are shown (mkdocs-jupyter does not execute): a picture
        assert "data:image/png;base64" in html.read_text(), f"{nb.name}: no figure shown"


def test_site_links_every_page_the_project_documents_in_docs():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in DOCS.rglob("*.md"):
        rel = page.relative_to(DOCS).as_posix()
        assert rel in nav, f"mkdocs.yml's nav does not name {rel}"


def test_getting_started_shows_the_readmes_two_commands():
    def commands(text):
        return [
            re.search(rf"<!-- {m} -->\n```bash\n(.*)\n```", text)[1]
            for m in ("main-command", "test-command")
        ]

    readme = commands((ROOT / "README.md").read_text())
    assert commands((DOCS / "getting-started.md").read_text()) == readme


# --------------------------------------------------------------------------------------
# Code blocks


def _needs_dot(code: str) -> bool:
    return ".render(" in code


def _has_fashion_mnist() -> bool:
    """The Debian package's folder or the cache's (what ``load("fashion-mnist")`` reads)."""
    places = [
        Path("/usr/share/datasets/fashion-mnist"),
        Path.home() / ".cache/funcnet/fashion-mnist",
    ]
    if os.environ.get("FUNCNET_DATA_DIR"):
        places.append(Path(os.environ["FUNCNET_DATA_DIR"]) / "fashion-mnist")
    return any(p.is_dir() and any(p.glob("t10k-images*")) for p in places)


class _PageRunner:
    """tests/_page_runner.py: a server that imported JAX, funcnet and Matplotlib once and
    forks a fresh process per page (about 1.7 CPU-seconds of imports saved per page); the
    pages share a persistent compilation cache (a program one page compiled is read by
    the next)."""

    def __init__(self, folder: Path):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
        env["JAX_COMPILATION_CACHE_DIR"] = str(folder / "jax-cache")
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "_page_runner.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip

    def _reply(self, deadline: float) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.time()))
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise TimeoutError
        return json.loads(line)

    def run(self, script: Path, cwd: Path, log: Path, timeout: float) -> int:
        """Run ``script`` in a fresh child in ``cwd`` (its output to ``log``); its exit
        status, negative if killed by a signal (the child's group is killed on time-out)."""
        request = {"script": str(script), "cwd": str(cwd), "log": str(log)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        deadline = time.time() + timeout
        pid = self._reply(time.time() + 120)["pid"]
        try:
            return self._reply(deadline)["returncode"]
        except TimeoutError:
            os.killpg(pid, signal.SIGKILL)
            self._reply(time.time() + 60)
            pytest.fail(f"{script} did not finish within {timeout} s")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def page_runner(tmp_path_factory):
    runner = _PageRunner(tmp_path_factory.mktemp("pages"))
    yield runner
    runner.close()


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p.read_text())], ids=_name)
def test_every_python_block_on_the_page_runs(page: Path, tmp_path, page_runner):
    blocks = python_blocks(page.read_text())
    code = "\n".join(f"# --- block {i + 1}\n{b}" for i, b in enumerate(blocks))
    if _needs_dot(code) and shutil.which("dot") is None:
        pytest.skip("needs Graphviz's dot (apt-get install graphviz)")
    if '"fashion-mnist"' in code and not _has_fashion_mnist():
        pytest.skip("needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    script = tmp_path / "blocks.py"
    script.write_text(code)
    work = tmp_path / "cwd"
    work.mkdir()
    log = tmp_path / "output.txt"
    returncode = page_runner.run(script, work, log, BLOCK_TIMEOUT_S)
    assert returncode == 0, f"{_name(page)}: a code block failed\n{log.read_text()[-8000:]}"


# --------------------------------------------------------------------------------------
# Figures


def _shown_images() -> dict[Path, list[str]]:
    """Every local picture a page shows -> the pages that show it."""
    shown: dict[Path, list[str]] = {}
    for page in PAGES:
        for ref in _IMAGE.findall(page.read_text()):
            if re.match(r"^[a-z]+:", ref):
                continue
            shown.setdefault((page.parent / ref).resolve(), []).append(_name(page))
    return shown


def test_every_shown_picture_exists_and_comes_from_a_listed_experiment():
    shown = _shown_images()
    assert shown, "no page shows a picture"
    for path, pages in shown.items():
        assert path.exists(), f"{pages} show {path}, which does not exist"
        assert path.parent == IMG, f"{pages} show {path}: pictures live in docs/img/"
        assert path.name in FIGURES, f"docs/img/{path.name} is not in docs/img/figures.json"


def test_every_listed_picture_is_shown_and_every_picture_listed():
    shown = {p.name for p in _shown_images()}
    files = {p.name for p in IMG.iterdir() if p.suffix in (".png", ".svg")}
    assert set(FIGURES) == files, "docs/img/ and figures.json differ"
    assert set(FIGURES) <= shown, f"listed but shown by no page: {set(FIGURES) - shown}"


@pytest.mark.parametrize("name", sorted(FIGURES), ids=str)
def test_listed_picture_is_written_by_its_experiment(name):
    entry = FIGURES[name]
    module = importlib.import_module(f"experiments.{entry['experiment']}")
    source = Path(module.__file__).read_text()
    stem = Path(entry["file"]).stem
    assert stem in source, f"experiments.{entry['experiment']} no longer writes {entry['file']}"
    if "function" in entry:
        assert callable(getattr(module, entry["function"]))
    else:
        assert callable(module.main)
    if entry["check"] == "recorded":  # not run here: its flags must still parse
        argv = [a.replace("{root}", str(ROOT)) for a in entry["argv"]]
        module.parse_args([*argv, "--out", "unused"])
        digest = hashlib.sha256((IMG / name).read_bytes()).hexdigest()
        assert digest == entry["sha256"], (
            f"docs/img/{name} changed: draw it again with its experiment and record its sha256"
        )
    else:
        assert entry["check"] == "regenerate", entry


_DRAWN: dict[tuple, Path] = {}


def _draw(entry: dict, tmp_path_factory) -> Path:
    """Run the entry's experiment once per argument list into a temporary folder."""
    key = (entry["experiment"], entry.get("function"), tuple(entry.get("argv", ())))
    if key not in _DRAWN:
        out = tmp_path_factory.mktemp(entry["experiment"])
        module = importlib.import_module(f"experiments.{entry['experiment']}")
        if "function" in entry:
            getattr(module, entry["function"])(out)
        else:
            argv = [a.replace("{root}", str(ROOT)) for a in entry["argv"]]
            module.main([*argv, "--out", str(out)])
        _DRAWN[key] = out
    return _DRAWN[key] / entry["file"]


def _same_picture(a: Path, b: Path) -> bool:
    if a.read_bytes() == b.read_bytes():
        return True
    if a.suffix == ".svg":  # Graphviz writes its version in a comment

        def strip(p):
            return [ln for ln in p.read_text().splitlines() if not ln.startswith("<!--")]

        return strip(a) == strip(b)
    import matplotlib.image as mimage

    x, y = mimage.imread(a), mimage.imread(b)
    return x.shape == y.shape and float(np.abs(x - y).max()) <= 2 / 255


@pytest.mark.parametrize(
    "name", sorted(k for k, v in FIGURES.items() if v["check"] == "regenerate"), ids=str
)
def test_shown_picture_is_what_its_experiment_draws_now(name, tmp_path_factory, capsys):
    entry = FIGURES[name]
    if entry["experiment"] in ("ch05_computational_graph", "ch06_batch_norm_gradient_check"):
        if shutil.which("dot") is None:
            pytest.skip("needs Graphviz's dot (apt-get install graphviz)")
    drawn = _draw(entry, tmp_path_factory)
    assert drawn.exists(), f"{entry['experiment']} did not write {entry['file']}"
    assert _same_picture(drawn, IMG / name), (
        f"docs/img/{name} is not what experiments.{entry['experiment']} draws now: "
        f"copy {entry['file']} from its output over it"
    )
