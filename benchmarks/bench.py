#!/usr/bin/env python
"""Benchmark of one DSR training step and of evaluation, split by component, all measured in one run.

    python benchmarks/bench.py [--cfg configs/quickstart_train.cfg] [--device cpu|cuda] [--batch-size B]
                            [--backbone resnet50] [--img-res 224] [--steps N] [--out docs/benchmarks.md]
                            [--precision 32|16-mixed|bf16-mixed] [--json FILE] [--opts KEY VALUE ...]

Settings: without --backbone / --img-res / --batch-size both of these are measured (each in its own
subprocess, so that peak memories do not mix):
  quickstart  the config as it is (configs/quickstart_train.cfg: resnet18, 64 px, B = 32), --steps steps
  release     the original's resnet50, 224 px, B = 32, --release-steps steps (fewer: slow on CPU)
With any of the three options one custom setting (the config with those overrides) is measured.
The focal length follows the crop: 5000 * IMG_RES / 224 (the quickstart config's own rule), so the
camera depth of a person stays the original's. --opts overrides config keys as train.py's does
(e.g. DATASET.NUM_WORKERS 8). --precision (default: the config's TRAINER.PRECISION) runs the
forward passes under autocast as Lightning does: float16 for '16-mixed' on CUDA, with a GradScaler
in the whole step (bfloat16 on CPU, where Lightning also replaces '16-mixed' by 'bf16-mixed'); the
DSR render and its losses stay float32 (DSRLoss.dsr_losses). --json writes the raw results.

Training step (one batch of the training DataLoader, DSR targets on, start_dsr=True), each
component on detached inputs so that its forward + backward is timed alone:
  data        DataLoader with DATASET.NUM_WORKERS workers, steady state (the mean period of
              back-to-back batches after the first workers x prefetch + 1), + the copy to the device
  backbone    backbone + HMR head forward, backward from the head outputs
  smpl        body model + camera (HMR.decode) forward + backward, + the no-grad GT mesh of the
              training step
  render      DSRLoss.dsr_losses (one SemanticRenderer pass + DSR-MC + DSR-C) forward + backward
  losses      every other DSRLoss term (start_dsr=False) forward + backward
  optimizer   Adam step + zero_grad
and, as a check, the whole step (model -> GT mesh -> DSRLoss -> backward -> Adam) timed end to end.
Evaluation (model.eval(), no grad, the validation DataLoader of DATASET.VAL_DS):
  data, forward (backbone + head), body (HMR.decode + H36M regression of prediction and GT mesh),
  metrics (PVE, MPJPE, Procrustes-aligned MPJPE in float64, as in DSRModule._eval_step).

Times: one warm-up call of each component, then N rounds in which every component runs once in
turn (load changes on a shared machine hit all alike); the median of the N calls, with min-max
(torch.cuda.synchronize around each call on CUDA).
Peak memory, per component, on one extra call after the timed ones:
  CPU   peak RSS growth of the process during the call: glibc's free memory is returned first
        (malloc_trim), the kernel's high-water mark is reset (/proc/self/clear_refs = 5) and
        VmHWM - VmRSS(before) is read; the data rows show the size of one collated batch (it arrives
        in shared memory), the training workers' private memory is in the notes.
  CUDA  torch.cuda.max_memory_allocated() - memory_allocated() before the call.

The markdown tables are printed and written to --out between the markers
``<!-- bench.py:<device>:begin/end -->`` (other text of the file is kept; a new file gets a title).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from bench_measure import measure  # noqa: E402
from bench_report import machine_description, setting_section, update_doc  # noqa: E402
from dsr.reporting import write_json_atomic, write_text_atomic  # noqa: E402

SETTINGS = {
    "quickstart": {},  # the config as given
    "release": {"backbone": "resnet50", "img_res": 224, "batch_size": 32},
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfg", default=os.path.join("configs", "quickstart_train.cfg"))
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--backbone", default=None, help="e.g. resnet50")
    ap.add_argument("--img-res", type=int, default=None, help="crop size (focal length scaled with it)")
    ap.add_argument("--steps", type=int, default=5, help="timed calls per component (quickstart / custom)")
    ap.add_argument("--release-steps", type=int, default=None,
                    help="timed calls per component of the release setting (default: --steps on CUDA, "
                         "min(--steps, 2) on CPU)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--omp-wait-policy", default="PASSIVE",
                    help="OMP_WAIT_POLICY of the measuring processes ('' = inherit). PASSIVE by default: on a "
                         "CPU shared with other jobs, spinning OpenMP threads made a ResNet step ~12x slower "
                         "with 2 threads here")
    ap.add_argument("--out", default=os.path.join("docs", "benchmarks.md"), help="markdown file, relative to the repository root ('' = print only)")
    ap.add_argument("--precision", default=None, choices=("32", "16-mixed", "bf16-mixed"),
                    help="autocast of the measured forward passes (default: the config's TRAINER.PRECISION)")
    ap.add_argument("--json", default=None, help="also write the raw results ({setting: result}) to this file")
    ap.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE", help="override config keys")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    cuda = args.device.startswith("cuda")
    args.cfg = os.path.abspath(args.cfg)
    if not os.path.isfile(args.cfg):
        ap.error(f"--cfg {args.cfg}: no such file")
    if args.child is not None:
        print("RESULT " + json.dumps(measure(args, json.loads(args.child))), flush=True)
        return 0
    if cuda:
        import torch

        if not torch.cuda.is_available():
            ap.error("--device cuda: no CUDA device is visible to torch")
    if args.backbone or args.img_res or args.batch_size:
        settings = {"custom": dict(backbone=args.backbone, img_res=args.img_res, batch_size=args.batch_size,
                                   steps=args.steps)}
    else:
        rel = args.release_steps or (args.steps if cuda else min(args.steps, 2))
        settings = {"quickstart": dict(SETTINGS["quickstart"], steps=args.steps),
                    "release": dict(SETTINGS["release"], steps=rel)}
    passthrough = ["--cfg", args.cfg, "--device", args.device, "--threads", str(args.threads)]
    if args.precision:
        passthrough += ["--precision", args.precision]
    if args.opts:
        passthrough += ["--opts", *args.opts]
    sections = []
    results = {}
    t_start = time.time()
    for name, setting in settings.items():
        cmd = [sys.executable, os.path.abspath(__file__), *passthrough, "--child", json.dumps(setting)]
        env = dict(os.environ)
        if args.omp_wait_policy:
            env["OMP_WAIT_POLICY"] = args.omp_wait_policy
        proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, env=env)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"setting {name} failed (exit code {proc.returncode})", file=sys.stderr)
            return 1
        res = json.loads(line[-1][len("RESULT "):])
        results[name] = res
        sec = setting_section(name, res)
        print("\n" + sec, flush=True)
        sections.append(sec)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(os.path.abspath(__file__), REPO),
                                                             *(argv if argv is not None else sys.argv[1:])])
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"## `benchmarks/bench.py` on {args.device} ({when}, {time.time() - t_start:.0f} s)\n\n"
              + "".join(f"- {m}\n" for m in machine_description(args.device, args.threads,
                                                                  args.omp_wait_policy))
              + f"- command: `{command}`\n"
              + "- shares are of the serial sum of the components; in training the DataLoader workers run "
                "alongside the compute (and, on a CPU machine, share its cores); the data rows are the mean "
                "period of back-to-back batches (hence no min-max spread)\n\n")
    section = header + "\n".join(sections)
    if args.json:
        write_json_atomic(args.json, dict(device=args.device, command=command, machine=machine_description(
            args.device, args.threads, args.omp_wait_policy), settings=results))
    if args.out:
        path = os.path.join(REPO, args.out) if not os.path.isabs(args.out) else args.out
        old = open(path).read() if os.path.exists(path) else ""
        write_text_atomic(path, update_doc(old, "cuda" if cuda else "cpu", section))
        print(f"\nwritten to {os.path.relpath(path, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
