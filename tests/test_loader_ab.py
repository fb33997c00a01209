"""benchmarks/loader_ab.py: two trees' item paths timed in alternating rounds (a smoke run on small
frames: both processes load the tree they were given, every round is timed, bad trees refused)."""
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import loader_ab  # noqa: E402


def test_ab_runs_both_trees_and_prints_the_ratio(tmp_path, capsys):
    tree_a = tmp_path / "a"  # a second tree: this one's dsr package through a link
    tree_a.mkdir()
    os.symlink(os.path.join(REPO, "dsr"), tree_a / "dsr")
    rc = loader_ab.main(["--a", str(tree_a), "--b", REPO, "--size", "96x64", "--frames", "3", "--rounds", "2",
                         "--items", "2", "--work", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    pkgs = dict(re.findall(r"^# ([AB]): (.*)$", out, re.M))  # each process imported its own tree's dsr
    assert pkgs == {"A": str(tree_a / "dsr"), "B": os.path.join(REPO, "dsr")}
    m = re.search(r"2 rounds of 2 items: A ([\d.]+) ms, B ([\d.]+) ms CPU per item; A / B ([\d.]+)x", out)
    assert m and float(m.group(1)) > 0 and float(m.group(2)) > 0
    assert os.path.isfile(tmp_path / "96x64_palette_3" / "train.npz")


def test_ab_refuses_a_folder_without_dsr(tmp_path, capsys):
    assert loader_ab.main(["--a", str(tmp_path), "--b", REPO]) == 2
    assert "has no dsr package" in capsys.readouterr().err
    assert loader_ab.main(["--a", REPO, "--b", REPO, "--size", "96by64"]) == 2
