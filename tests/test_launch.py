"""docs/gpu.md's launch of several processes, rehearsed on the CPU: the same ``torchrun`` line with
two processes over gloo on a tiny embedded-default tree, and the SLURM script's content.

The torchrun line is read from docs/gpu.md itself (the block between ``<!-- torchrun begin -->``
and ``<!-- torchrun end -->``), so the page cannot drift from what is tested.
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_training import data_root, make_cfg  # noqa: E402,F401  (data_root: module-scoped fixture)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU_MD = os.path.join(REPO, "docs", "gpu.md")


def _block(name: str) -> str:
    text = open(GPU_MD).read()
    m = re.search(rf"<!-- {name} begin -->\s*```\w*\n(.*?)```\s*<!-- {name} end -->", text, re.S)
    assert m, f"docs/gpu.md has no {name} block"
    return m.group(1)


def _torchrun_args() -> list:
    """The documented torchrun command as argv (continuation lines joined, comments dropped)."""
    lines = [ln.split(" #")[0] for ln in _block("torchrun").splitlines() if not ln.lstrip().startswith("#")]
    words = shlex.split(" ".join(ln.rstrip("\\ ") for ln in lines))
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    assert words[0] == "torchrun", words
    return env, words[1:]


def test_documented_sbatch_script_launches_one_task_per_gpu():
    script = _block("sbatch")
    assert script.startswith("#!/bin/bash")
    tasks = int(re.search(r"#SBATCH --ntasks-per-node=(\d+)", script).group(1))
    gpus = int(re.search(r"#SBATCH --gpus-per-node=(\d+)", script).group(1))
    nodes = int(re.search(r"#SBATCH --nodes=(\d+)", script).group(1))
    assert tasks == gpus  # Lightning's SLURM environment: one task per GPU
    run = re.search(r"srun (.+)", script.replace("\\\n", " ")).group(1)
    assert "train.py" in run and f"TRAINER.DEVICES {gpus}" in run and f"TRAINER.NUM_NODES {nodes}" in run
    assert "DSR_RUN_DIR=" in script  # every task writes to one run directory


@pytest.mark.slow
def test_torchrun_two_cpu_processes_gloo(data_root, tmp_path):  # noqa: F811
    env_doc, args = _torchrun_args()
    assert "DSR_RUN_DIR" in env_doc and "train.py" in args
    cfg = make_cfg(data_root, tmp_path, **{"TRAINING.MAX_EPOCHS": 1, "EXP_NAME": "torchrun"})
    cfg_file = tmp_path / "launch.cfg"
    cfg_file.write_text(cfg.dump())
    # the documented line with the CPU stand-ins: 2 processes on one node, the tiny config, gloo
    i = args.index("--cfg")
    args[i + 1] = str(cfg_file)
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    local = {"--nproc_per_node": "2", "--nnodes": "1", "--node_rank": "0", "--master_addr": "127.0.0.1",
             "--master_port": str(port)}
    args = [f"{a.split('=')[0]}={local[a.split('=')[0]]}" if a.split("=")[0] in local else a for a in args]
    j = args.index("--opts")
    opts = args[j + 1:]
    for k, v in (("TRAINER.DEVICES", "2"), ("TRAINER.NUM_NODES", "1"), ("TRAINER.ACCELERATOR", "cpu")):
        if k in opts:
            opts[opts.index(k) + 1] = v
        else:
            opts += [k, v]
    args = args[:j + 1] + opts
    run_dir = tmp_path / "run_dir"
    env = dict(os.environ, DSR_RUN_DIR=str(run_dir), PL_DISABLE_FORK="1", OMP_NUM_THREADS="1")
    for k in ("LOCAL_RANK", "NODE_RANK", "RANK", "WORLD_SIZE"):
        env.pop(k, None)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    ck = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # 8 training people, batch 2, LIMIT_TRAIN_BATCHES 2: each of the 2 ranks takes 2 batches of its half
    assert ck["global_step"] == 2
    assert (run_dir / "config_to_run.yaml").is_file()
    # no second run directory; the experiment folder's results.csv has one row, from rank 0's test pass
    assert sorted(os.listdir(tmp_path)) == ["launch.cfg", "results.csv", "run_dir"]
    rows = (tmp_path / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 2 and rows[1].startswith("run_dir,synthetic-test,")
