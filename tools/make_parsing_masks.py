#!/usr/bin/env python
"""Human-parsing masks for a dataset: images -> CIHP colour PNGs where the DSR loader reads them.

    python tools/make_parsing_masks.py --parser graphonomy --weights inference.pth \\
        --npz dsr_data/dataset_extras/coco_2014_train.npz --img-dir dsr_data/dataset_folders/coco
    python tools/make_parsing_masks.py --parser schp-lip --weights exp-schp-201908261155-lip.pth \\
        --img-folder photos/ --out photos_parsing/

Inputs: a SPIN-format npz (``imgname`` relative to ``--img-dir``; each image is parsed once however
many rows (people) it has) or every image under a folder (.jpg .jpeg .png .bmp, recursively).
Output: ``<out>/<imgname with .png>``, an 8-bit palette PNG in the CIHP colours at the image's
size; ``--out`` defaults to ``<img-dir>/grph_sequences`` with ``--npz``, the folder the training
loader reads. Writes are atomic; a run started again skips the masks already written.

``--crop-margin M`` (npz only): parse each person's square crop of side 200 * scale * M around
its ``center`` (clipped to the image) instead of the whole image, and paste the crops back into a
full-size mask (overlaps: the crop whose person centre is nearest wins; outside every crop:
background). Much less work on large frames (H36M, MPI-INF-3DHP); default: the whole image, as
DSR's authors ran Graphonomy.

Runs through Lightning's ``Trainer.predict`` (``--accelerator``, ``--devices``, ``--num-nodes``:
DDP, each rank parses and writes its own share). Missing, truncated or undecodable images are
listed in ``<out>/failures.csv`` (imgname, path, reason; rewritten by every run) and the run goes
on; a closing summary gives images parsed, skipped, failures and seconds per image. Weights of
another parser or a file that is not a checkpoint stop the run before any work.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from dsr.parsing import PARSERS, build_parser, parse_images  # noqa: E402
from dsr.parsing.masks import (  # noqa: E402
    ImageReadError,
    mask_file,
    paste_crops,
    person_box,
    read_image_rgb,
    write_mask_png,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class UsageError(ValueError):
    """Bad command-line input (file missing, incompatible options); reported in one line."""


# ----------------------------------------------------------------------------- jobs
def list_jobs(args) -> tuple[list[dict], str, int]:
    """-> (jobs still to do, out dir, number already done). A job: imgname, path, out, people
    ([(cx, cy, scale), ...] distinct per image; empty without --npz)."""
    if args.npz:
        from dsr.data.base_dataset import DatasetError, load_spin_npz

        try:
            data = load_spin_npz(args.npz)
        except DatasetError as e:
            raise UsageError(str(e)) from e
        root = args.img_dir
        out = args.out or os.path.join(root, "grph_sequences")
        people: OrderedDict[str, list] = OrderedDict()
        for name, c, s in zip(data["imgname"], data["center"], data["scale"]):
            p = (float(c[0]), float(c[1]), float(s))
            lst = people.setdefault(str(name), [])
            if p not in lst:
                lst.append(p)
        names = list(people)
    else:
        root = args.img_folder
        out = args.out
        names = sorted(os.path.relpath(os.path.join(dp, f), root)
                       for dp, _, files in os.walk(root) for f in files
                       if f.lower().endswith(IMAGE_EXTENSIONS))
        people = {}
    jobs = []
    for name in names:
        o = mask_file(out, name)
        if not os.path.isfile(o):
            jobs.append({"imgname": name, "path": os.path.join(root, name), "out": o, "people": people.get(name, [])})
    return jobs, out, len(names) - len(jobs)


class ImageJobs(Dataset):
    """Reads each job's image (in the loader workers); a read failure travels as ``error``."""

    def __init__(self, jobs: list[dict]):
        self.jobs = jobs

    def __len__(self):
        return len(self.jobs)

    def __getitem__(self, i):
        job = dict(self.jobs[i])
        try:
            job["image"], job["error"] = read_image_rgb(job["path"]), None
        except ImageReadError as e:
            job["image"], job["error"] = None, str(e)
        return job


class JobData(pl.LightningDataModule):
    """Each rank gets every world_size-th job (no padding, no repeats)."""

    def __init__(self, jobs, batch_size, num_workers):
        super().__init__()
        self.jobs, self.batch_size, self.num_workers = jobs, batch_size, num_workers

    def predict_dataloader(self):
        rank, world = self.trainer.global_rank, self.trainer.world_size
        return DataLoader(ImageJobs(self.jobs[rank::world]), batch_size=self.batch_size, shuffle=False,
                          num_workers=self.num_workers, collate_fn=list)


# ----------------------------------------------------------------------------- parsing + writing
class MaskWriter(pl.LightningModule):
    """predict_step: parse a batch of images (or their person crops) and write their masks."""

    def __init__(self, model, parser: str, scales, flip: bool, crop_margin: float):
        super().__init__()
        self.model = model
        self.parser, self.scales, self.flip, self.crop_margin = parser, scales, flip, crop_margin
        self.written, self.failures = 0, []

    def on_predict_start(self):
        self._t0 = time.perf_counter()

    def predict_step(self, batch, batch_idx):
        inputs, plans = [], []
        for job in batch:
            if job["error"] is not None:
                self.failures.append((job["imgname"], job["path"], job["error"]))
                continue
            img = job["image"]
            h, w = img.shape[:2]
            if self.crop_margin > 0:
                boxes, centres = [], []
                for cx, cy, s in job["people"]:
                    b = person_box((cx, cy), s, self.crop_margin, h, w)
                    if b is not None:
                        boxes.append(b)
                        centres.append((cx, cy))
                if not boxes:
                    self.failures.append((job["imgname"], job["path"], "every person box lies outside the image"))
                    continue
                inputs += [img[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes]
                plans.append((job, boxes, centres))
            else:
                inputs.append(img)
                plans.append((job, None, None))
        if not inputs:
            return 0
        labels = list(parse_images(self.model, self.parser, inputs, scales=self.scales, flip=self.flip))
        k = 0
        for job, boxes, centres in plans:
            h, w = job["image"].shape[:2]
            if boxes is None:
                full = labels[k]
                k += 1
            else:
                full = paste_crops(h, w, boxes, centres, labels[k:k + len(boxes)])
                k += len(boxes)
            write_mask_png(job["out"], full)
            self.written += 1
        return len(plans)

    def on_predict_end(self):
        self.seconds = time.perf_counter() - self._t0


def gather_summary(writer: MaskWriter, is_global_zero: bool) -> dict | None:
    """Every rank's counts and failures -> one summary on global rank 0 (None elsewhere). Called
    after ``trainer.predict`` on every rank (a rank without work skips the predict hooks)."""
    mine = {"written": writer.written, "failures": writer.failures, "seconds": getattr(writer, "seconds", 0.0)}
    every = [mine]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        every = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(every, mine)
    if not is_global_zero:
        return None
    return {"written": sum(e["written"] for e in every),
            "failures": sorted(f for e in every for f in e["failures"]),
            "seconds": max(e["seconds"] for e in every)}


def write_failures(path: str, failures) -> None:
    """``failures.csv`` (imgname, path, reason), written atomically; header only when none."""
    buf = io.StringIO()
    wr = csv.writer(buf)
    wr.writerow(["imgname", "path", "reason"])
    wr.writerows(failures)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".part", "w", newline="") as f:
        f.write(buf.getvalue())
    os.replace(path + ".part", path)


# ----------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--parser", required=True, choices=PARSERS)
    w = p.add_mutually_exclusive_group(required=True)
    w.add_argument("--weights", help="the parser's checkpoint file (where to get it: docs/parsing.md)")
    w.add_argument("--random-weights", action="store_true",
                   help="random initialisation (seed 0): for tests and timing only, the masks are meaningless")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--npz", help="SPIN-format npz; its imgname are relative to --img-dir")
    src.add_argument("--img-folder", help="parse every image under this folder")
    p.add_argument("--img-dir", help="dataset root of --npz's imgname")
    p.add_argument("--out", help="output folder (default with --npz: <img-dir>/grph_sequences)")
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto | cpu | gpu")
    p.add_argument("--devices", default="1", help="devices per node (> 1: DDP)")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--precision", default="32-true", help="Lightning precision (32-true faithful; 16-mixed on GPUs)")
    p.add_argument("--batch-size", type=int, default=4, help="images per step (each rank)")
    p.add_argument("--num-workers", type=int, default=2, help="image-reading workers per rank")
    p.add_argument("--crop-margin", type=float, default=0.0,
                   help="> 0 (with --npz): parse person crops of side 200*scale*M, pasted back (0: whole image)")
    p.add_argument("--scales", type=float, nargs="+", default=None,
                   help="input scales (default: the parser's own: Graphonomy 1 0.5 0.75 1.25 1.5 1.75, SCHP 1)")
    p.add_argument("--no-flip", action="store_true", help="skip the mirrored pass (faster, less accurate)")
    a = p.parse_args(argv)
    if a.npz and not a.img_dir:
        p.error("--npz needs --img-dir (the dataset root its imgname are relative to)")
    if a.img_folder and not a.out:
        p.error("--img-folder needs --out")
    if a.crop_margin < 0 or (a.crop_margin > 0 and not a.npz):
        p.error("--crop-margin must be >= 0 and needs --npz (the people's center / scale)")
    if a.batch_size < 1:
        p.error("--batch-size must be >= 1")
    if a.scales is not None and any(s <= 0 for s in a.scales):
        p.error("--scales must be positive")
    return a


def run(args) -> dict:
    """Check the inputs and the weights, then parse; returns the summary (global rank 0) or None."""
    for path, what in ((args.npz, "--npz file"), (args.img_dir, "--img-dir folder"),
                       (args.img_folder, "--img-folder")):
        if path and not os.path.exists(path):
            raise UsageError(f"{what} not found: {path}")
    if args.random_weights:
        torch.manual_seed(0)  # the same random network on every rank and in every run
    model = build_parser(args.parser, None if args.random_weights else args.weights)  # foreign weights stop here
    # Every rank lists the jobs itself, before trainer.predict: the process-group rendezvous in
    # predict makes them all finish listing before any rank writes a mask, so the lists agree.
    jobs, out, done = list_jobs(args)
    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    multi = (isinstance(devices, int) and devices > 1) or args.num_nodes > 1
    trainer = pl.Trainer(accelerator=args.accelerator, devices=devices, num_nodes=args.num_nodes,
                         strategy="ddp" if multi else "auto", precision=args.precision, logger=False,
                         enable_checkpointing=False, use_distributed_sampler=False, enable_model_summary=False)
    writer = MaskWriter(model, args.parser, args.scales, not args.no_flip, args.crop_margin)
    if trainer.is_global_zero:
        print(f"{args.parser}: {len(jobs)} images to parse, {done} already done, masks -> {out}", flush=True)
    trainer.predict(writer, datamodule=JobData(jobs, args.batch_size, args.num_workers), return_predictions=False)
    s = gather_summary(writer, trainer.is_global_zero)
    if s is None:
        return None
    write_failures(os.path.join(out, "failures.csv"), s["failures"])
    s.update(skipped=done, out=out)
    per = f"{s['seconds'] / s['written']:.3f} s/image" if s["written"] else "-"
    print(f"done: {s['written']} masks written, {done} skipped (already there), {len(s['failures'])} failures "
          f"(listed in {os.path.join(out, 'failures.csv')}); {s['seconds']:.1f} s, {per}", flush=True)
    for name, path, reason in s["failures"][:10]:
        print(f"  failed: {path}: {reason}", flush=True)
    return s


def main(argv=None) -> int:
    args = parse_args(argv)
    from dsr.parsing import ParserWeightsError

    try:
        run(args)
    except (UsageError, ParserWeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
