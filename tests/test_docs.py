"""The docs stay true: every command line in README.md and docs/*.md names a file or module that
exists, every relative link resolves, docs/config.md is current, the README stays a front door."""
from __future__ import annotations

import glob
import importlib.util
import os
import re

import pytest

from conftest import load_script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))

# `python X.py ...` / `.venv/bin/python X.py`, `python -m pkg.mod ...`, `bash X.sh ...`
PY_FILE = re.compile(r"(?<![\w/.-])(?:\.venv/bin/|\$PY |\"\$PY\" )?python(?:3(?:\.\d+)?)? +(?!-m\b)(?:-\w+ +)*([\w./-]+\.py)\b")
PY_MOD = re.compile(r"(?<![\w/.-])(?:\.venv/bin/)?python(?:3(?:\.\d+)?)? +-m +([A-Za-z_][\w.]*)")
BASH = re.compile(r"(?<![\w/.-])bash +([\w./-]+\.sh)\b")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _commands(text: str):
    files = PY_FILE.findall(text) + BASH.findall(text)
    return files, PY_MOD.findall(text)


def _rel(path: str) -> str:
    return os.path.relpath(path, REPO)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_command_names_something_that_exists(page):
    text = open(page).read()
    files, modules = _commands(text)
    missing = [f for f in files if not os.path.isfile(os.path.join(REPO, f))]
    assert not missing, f"{_rel(page)}: commands name files that do not exist: {sorted(set(missing))}"
    bad = [m for m in modules if importlib.util.find_spec(m) is None]
    assert not bad, f"{_rel(page)}: python -m names modules that do not exist: {sorted(set(bad))}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(open(page).read()):
        if re.match(r"^(https?:|mailto:|#)", target):
            continue
        path = target.split("#", 1)[0]
        if not os.path.exists(os.path.join(os.path.dirname(page), path)):
            broken.append(target)
    assert not broken, f"{_rel(page)}: links to nothing: {broken}"


def test_the_patterns_find_what_they_must():
    """The checks above are only as good as their patterns: a known text, its known commands."""
    text = ("run `python tools/check_data.py --cfg x`, then .venv/bin/python studies/ablation.py and\n"
            "```bash\npython -m dsr.data.preprocess 3dpw --root R\nbash scripts/quickstart.sh --long\n"
            "python -u benchmarks/bench.py\n```\nnot python3.11 alone; see [a](docs/x.md#y) ![b](i.png)")
    files, modules = _commands(text)
    assert files == ["tools/check_data.py", "studies/ablation.py", "benchmarks/bench.py", "scripts/quickstart.sh"]
    assert modules == ["dsr.data.preprocess"]
    assert LINK.findall(text) == ["docs/x.md#y", "i.png"]
    assert "nope/missing.py" in _commands("python nope/missing.py")[0]


def test_config_page_is_current():
    doc = load_script("tools/make_config_doc.py")
    with open(doc.DOC) as f:
        assert f.read() == doc.render(), "docs/config.md is out of date: run python tools/make_config_doc.py"


def test_config_page_lists_every_key():
    from dsr.config import get_cfg_defaults

    def flat(node, prefix=""):
        for k, v in node.items():
            yield from flat(v, f"{prefix}{k}.") if hasattr(v, "items") else [f"{prefix}{k}"]

    text = open(os.path.join(REPO, "docs", "config.md")).read()
    keys = list(flat(get_cfg_defaults()))
    assert len(keys) > 100
    assert [k for k in keys if f"| `{k}` |" not in text] == []


def test_readme_is_a_front_door():
    lines = open(os.path.join(REPO, "README.md")).read().splitlines()
    assert len(lines) <= 200
    head = "\n".join(lines[:30])
    assert "bash scripts/quickstart.sh" in head and "bash scripts/test.sh" in head
    pages = set(re.findall(r"\]\(docs/([\w-]+\.md)\)", "\n".join(lines)))
    # the README's table reaches every page of docs/
    assert pages >= {os.path.basename(p) for p in glob.glob(os.path.join(REPO, "docs", "*.md"))}
