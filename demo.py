#!/usr/bin/env python
"""Demo: photos and videos -> SMPL-format meshes of every person (docs/demo.md; reference §10).

    python demo.py --checkpoint CKPT --img IMG [--boxes B.json] [--outfile_folder O] [--save_params]
    python demo.py --checkpoint CKPT --video V.mp4 [--boxes B.json] [--smooth] --outfile_folder O
    python demo.py --checkpoint CKPT --img IMG [--bbox BBOX.json | --openpose KP.json | --detector none]
    python demo.py --checkpoint CKPT --img_folder D [--openpose_folder K] --outfile_folder O

Every person: a torchvision detector (``--detector``, weights from ``--det-weights`` or
torchvision's cache, never downloaded) or ``--boxes``; results in one full-image camera,
rendered together: ``<stem>_result.png`` / ``<stem>_result.mp4``, with ``--save_params``
``<stem>.npz`` (one row per person per frame, dsr/inference/outputs.py), with ``--save_obj``
one camera-frame mesh per person (per frame and track for a video, in ``<stem>_obj/``).

The original's single-person mode (``--bbox``, ``--openpose``, ``--openpose_folder`` or
``--detector none`` on images without ``--boxes``) is kept as it was: ``--bbox`` json ``{"bbox": [x, y, w, h]}`` ->
centre of the box, scale max(w, h)/200; ``--openpose`` json (first person, keypoints with
confidence > 0.2) -> centre = their mean, scale = 1.2 * max extent / 200; neither -> the image
centre (W // 2, H // 2), scale max(H, W)/200. In folder mode the OpenPose file of
``<stem>.<ext>`` is ``<openpose_folder>/<stem>_keypoints.json``. Writes ``<stem>_result.png`` =
[input crop | overlay | side view], and with the flags ``<stem>.obj`` (camera-frame mesh) and
``<stem>.npz`` (pose rotmats, betas, cam, cam_t, vertices, center, scale).
Body-model paths: --cfg, else the config stored in a checkpoint made by this project, else
configs/dsr_eval.cfg. User errors: one line on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

from dsr.inference.detector import box_from_keypoints
from dsr.inference.errors import InputError as DemoError  # one error type for every demo input
from dsr.inference.outputs import write_obj
from dsr.inference.video import IMG_EXTS, read_image  # read_image: (H, W, 3) uint8 RGB; DemoError if missing or undecodable


def bbox_from_json(path: str):
    try:
        with open(path) as f:
            data = json.load(f)
        x, y, w, h = (float(v) for v in data["bbox"])
    except FileNotFoundError:
        raise DemoError(f"{path}: bbox file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DemoError(f"{path}: malformed bbox json, expected {{\"bbox\": [x, y, w, h]}} ({e})") from None
    if w <= 0 or h <= 0:
        raise DemoError(f"{path}: bbox width and height must be positive, got w={w}, h={h}")
    return np.array([x + w / 2.0, y + h / 2.0]), max(w, h) / 200.0


def bbox_from_openpose(path: str, conf_thresh: float = 0.2, rescale: float = 1.2):
    try:
        with open(path) as f:
            data = json.load(f)
        kp = np.asarray(data["people"][0]["pose_keypoints_2d"], dtype=np.float64).reshape(-1, 3)
    except FileNotFoundError:
        raise DemoError(f"{path}: OpenPose file not found") from None
    except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as e:
        raise DemoError(f"{path}: malformed OpenPose json, expected people[0].pose_keypoints_2d ({e})") from None
    box = box_from_keypoints(kp[:, :2], kp[:, 2] > conf_thresh, rescale)  # the OpenPose rule
    if box is None:
        raise DemoError(f"{path}: fewer than 2 keypoints with confidence > {conf_thresh}")
    x, y, side, _ = box
    return np.array([x + side / 2.0, y + side / 2.0]), side / 200.0


def prepare(img_path: str, bbox_json=None, openpose_json=None, res: int = 224):
    """-> (normalised crop (3,res,res) float32, crop uint8 (res,res,3), center, scale)."""
    from dsr.data.image_utils import crop_cv2, normalize_crop

    img = read_image(img_path)
    if bbox_json:
        center, scale = bbox_from_json(bbox_json)
    elif openpose_json:
        center, scale = bbox_from_openpose(openpose_json)
    else:
        h, w = img.shape[:2]
        center, scale = np.array([w // 2, h // 2]), max(h, w) / 200.0  # integer centre (the original)
    crop = crop_cv2(img, center, scale, res)
    return normalize_crop(crop), crop, center, scale


def resolve_config(checkpoint: str, cfg_file: str | None):
    """The config that gives the body-model paths: --cfg, else the checkpoint's own, else dsr_eval."""
    import torch

    from dsr.config import config_from_yaml_text, load_config

    if cfg_file:
        cfg = load_config(cfg_file)
    else:
        cfg = None
        if not os.path.isfile(checkpoint):
            raise DemoError(f"{checkpoint}: checkpoint not found")
        try:
            ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise DemoError(f"{checkpoint}: cannot read the checkpoint ({type(e).__name__}: {e})") from None
        hp = ck.get("hyper_parameters", {}) if isinstance(ck, dict) else {}
        if isinstance(hp, dict) and isinstance(hp.get("cfg"), str):
            cfg = config_from_yaml_text(hp["cfg"], f"{checkpoint} (stored config)")
        else:
            cfg = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "dsr_eval.cfg"))
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TRAINING.PRETRAINED = checkpoint
    cfg.freeze()
    return cfg


def build_model(checkpoint: str, cfg_file: str | None, device: str):
    from dsr.models import HMR
    from dsr.models.checkpoint import CheckpointError

    cfg = resolve_config(checkpoint, cfg_file)
    try:
        model = HMR(cfg)
    except CheckpointError as e:
        raise DemoError(str(e)) from None
    return model.to(device).eval(), cfg


def run_batch(model, cfg, items, out_folder, save_obj=False, save_params=False, device="cpu"):
    """items: list of (img_path, crop_tensor, crop_uint8, center, scale). Writes the results."""
    import cv2
    import torch

    from dsr import constants
    from dsr.rendering.overlay import render_mesh, side_view_vertices

    x = torch.from_numpy(np.stack([it[1] for it in items])).to(device)
    with torch.no_grad():
        pred = model(x)
    verts, cam_t = pred["smpl_vertices"].float(), pred["pred_cam_t"].float()
    faces = model.body.faces
    res = x.shape[-1]
    color = constants.MESH_COLORS.get(cfg.DATASET.MESH_COLOR, constants.MESH_COLORS["blue"])
    bg = torch.from_numpy(np.stack([it[2] for it in items]).astype(np.float32) / 255.0).to(device)
    overlay, _ = render_mesh(verts, cam_t, faces, res, cfg.DATASET.FOCAL_LENGTH, color=color, background=bg)
    side, _ = render_mesh(side_view_vertices(verts), cam_t, faces, res, cfg.DATASET.FOCAL_LENGTH, color=color)
    written = []
    for i, (path, _, crop, center, scale) in enumerate(items):
        stem = os.path.splitext(os.path.basename(path))[0]
        row = np.concatenate([crop, (overlay[i].cpu().numpy() * 255).round().astype(np.uint8),
                              (side[i].cpu().numpy() * 255).round().astype(np.uint8)], axis=1)
        out = os.path.join(out_folder, f"{stem}_result.png")
        cv2.imwrite(out, row[:, :, ::-1])
        written.append(out)
        if save_obj:
            write_obj(os.path.join(out_folder, f"{stem}.obj"), (verts[i] + cam_t[i]).cpu().numpy(), faces.cpu().numpy())
        if save_params:
            np.savez(os.path.join(out_folder, f"{stem}.npz"), pose=pred["pred_pose"][i].cpu().numpy(),
                     betas=pred["pred_shape"][i].cpu().numpy(), cam=pred["pred_cam"][i].cpu().numpy(),
                     cam_t=cam_t[i].cpu().numpy(), vertices=verts[i].cpu().numpy(), center=center, scale=scale)
    return written


def build_detector(args):
    """--detector/--det-weights -> a PersonDetector, or None for --detector none / --boxes."""
    if args.boxes or args.detector == "none":
        return None
    from dsr.inference import PersonDetector

    return PersonDetector(args.detector, args.det_weights, args.device, args.det_thresh, args.max_people, args.det_size)


def parse_args(argv=None):
    from dsr.inference import DETECTORS
    from dsr.inference.one_euro import DEFAULT_BETA, DEFAULT_MIN_CUTOFF

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--cfg", default=None)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--img")
    src.add_argument("--img_folder")
    src.add_argument("--video", help="a video file (anything OpenCV reads); frames are streamed")
    box = p.add_mutually_exclusive_group()
    box.add_argument("--bbox", help="the original's single-person mode: {\"bbox\": [x, y, w, h]}")
    box.add_argument("--openpose", help="the original's single-person mode: OpenPose json")
    box.add_argument("--boxes", help="json: boxes [x, y, w, h(, score)] (image) or one list of boxes per frame (video)")
    p.add_argument("--openpose_folder")
    p.add_argument("--outfile_folder", default=None)
    p.add_argument("--save_obj", action="store_true")
    p.add_argument("--save_params", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch_size", type=int, default=8)
    g = p.add_argument_group("detection and tracking (docs/demo.md)")
    g.add_argument("--detector", default="fasterrcnn_mobilenet_v3", choices=[*DETECTORS, "none"])
    g.add_argument("--det-weights", dest="det_weights", default=None)
    g.add_argument("--det-thresh", dest="det_thresh", type=float, default=0.5)
    g.add_argument("--max-people", dest="max_people", type=int, default=10)
    g.add_argument("--det-size", dest="det_size", type=int, default=None,
                   help="shorter side the detector resizes frames to (default: torchvision's, 800)")
    g.add_argument("--det-every", dest="det_every", type=int, default=1,
                   help="video: detect every N-th frame, the tracker predicts the boxes in between")
    g.add_argument("--box-scale", dest="box_scale", type=float, default=1.2)
    g.add_argument("--min-hits", dest="min_hits", type=int, default=3)
    g.add_argument("--max-age", dest="max_age", type=int, default=30)
    g.add_argument("--smooth", action="store_true", help="video: One-Euro filter on boxes and parameters")
    g.add_argument("--min-cutoff", dest="min_cutoff", type=float, default=DEFAULT_MIN_CUTOFF)
    g.add_argument("--beta", type=float, default=DEFAULT_BETA)
    args = p.parse_args(argv)
    if args.boxes and args.img_folder:
        p.error("--boxes goes with --img or --video")
    if (args.bbox or args.openpose) and not args.img:
        p.error("--bbox / --openpose go with --img (single-person mode)")
    for k in ("batch_size", "max_people", "det_every", "min_hits"):
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        model, cfg = build_model(args.checkpoint, args.cfg, args.device)
        if args.video:
            return run_video(model, args)
        # --boxes wins over --detector none (the boxes replace any detector)
        single = not args.boxes and (bool(args.bbox or args.openpose or args.openpose_folder) or args.detector == "none")
        if args.img and not single:
            return run_image(model, args)
        if args.img_folder and not single:
            return run_folder(model, args)
    except DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_single(model, cfg, args)


def run_video(model, args) -> int:
    from dsr.inference.outputs import load_boxes_json
    from dsr.inference.run import process_video
    from dsr.inference.video import VideoReader

    if not args.outfile_folder:
        raise DemoError("--outfile_folder is required with --video")
    VideoReader(args.video).cap.release()  # a bad video fails before the detector loads
    boxes = load_boxes_json(args.boxes, video=True) if args.boxes else None
    detector = build_detector(args)
    s = process_video(model, args.video, args.outfile_folder, boxes=boxes, detector=detector, det_every=args.det_every,
                      smooth=args.smooth, min_cutoff=args.min_cutoff, beta=args.beta, min_hits=args.min_hits,
                      max_age=args.max_age, batch_size=args.batch_size, box_scale=args.box_scale,
                      save_params=args.save_params, save_obj=args.save_obj, device=args.device,
                      boxes_source=args.boxes or "boxes")
    for path in s.outputs:
        print(path)
    print(s.line())
    return 0


def run_image(model, args) -> int:
    from dsr.inference.outputs import load_boxes_json
    from dsr.inference.run import process_image

    read_image(args.img)  # a bad image fails before the detector loads
    boxes = load_boxes_json(args.boxes, video=False) if args.boxes else None
    out_folder = args.outfile_folder or os.path.dirname(os.path.abspath(args.img))
    os.makedirs(out_folder, exist_ok=True)
    s = process_image(model, args.img, out_folder, boxes=boxes, detector=build_detector(args),
                      batch_size=args.batch_size, box_scale=args.box_scale, save_params=args.save_params,
                      save_obj=args.save_obj, device=args.device, boxes_source=args.boxes or "boxes")
    for path in s.outputs:
        print(path)
    print(s.line())
    return 0


def run_folder(model, args) -> int:
    from tqdm import tqdm

    from dsr.inference.run import process_image

    if not os.path.isdir(args.img_folder):
        raise DemoError(f"{args.img_folder}: image folder not found")
    if not args.outfile_folder:
        raise DemoError("--outfile_folder is required with --img_folder")
    os.makedirs(args.outfile_folder, exist_ok=True)
    detector = build_detector(args)
    images = sorted(f for f in glob.glob(os.path.join(args.img_folder, "*")) if f.lower().endswith(IMG_EXTS))
    failed, n_ok, people = [], 0, 0
    for path in tqdm(images, desc="demo", unit="image"):
        try:
            s = process_image(model, path, args.outfile_folder, detector=detector, batch_size=args.batch_size,
                              box_scale=args.box_scale, save_params=args.save_params, save_obj=args.save_obj,
                              device=args.device)
            n_ok, people = n_ok + 1, people + s.people
        except DemoError as e:
            failed.append(str(e))
    print(f"{n_ok} result(s) written to {args.outfile_folder} ({people} people); {len(failed)} failed")
    for msg in failed:
        print(f"  failed: {msg}", file=sys.stderr)
    return 0 if n_ok or not images else 1


def run_single(model, cfg, args) -> int:
    """The original's one-person-per-image mode (three-panel picture)."""
    res = int(cfg.DATASET.IMG_RES)
    if args.img:
        out_folder = args.outfile_folder or os.path.dirname(os.path.abspath(args.img))
        os.makedirs(out_folder, exist_ok=True)
        try:
            item = prepare(args.img, args.bbox, args.openpose, res)
        except DemoError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for path in run_batch(model, cfg, [(args.img, *item)], out_folder, args.save_obj, args.save_params, args.device):
            print(path)
        return 0

    from tqdm import tqdm

    if not os.path.isdir(args.img_folder):
        print(f"error: {args.img_folder}: image folder not found", file=sys.stderr)
        return 2
    if not args.outfile_folder:
        print("error: --outfile_folder is required with --img_folder", file=sys.stderr)
        return 2
    os.makedirs(args.outfile_folder, exist_ok=True)
    images = sorted(f for f in glob.glob(os.path.join(args.img_folder, "*")) if f.lower().endswith(IMG_EXTS))
    failed, batch, n_ok = [], [], 0
    for i, path in enumerate(tqdm(images, desc="demo")):
        stem = os.path.splitext(os.path.basename(path))[0]
        op = os.path.join(args.openpose_folder, f"{stem}_keypoints.json") if args.openpose_folder else None
        try:
            batch.append((path, *prepare(path, None, op, res)))
        except DemoError as e:
            failed.append(str(e))
        if batch and (len(batch) == args.batch_size or i == len(images) - 1):
            n_ok += len(run_batch(model, cfg, batch, args.outfile_folder, args.save_obj, args.save_params, args.device))
            batch = []
    print(f"{n_ok} result(s) written to {args.outfile_folder}; {len(failed)} failed")
    for msg in failed:
        print(f"  failed: {msg}", file=sys.stderr)
    return 0 if n_ok or not images else 1


if __name__ == "__main__":
    sys.exit(main())
