"""The synthetic dataset (embedded default): people of the free body model rendered onto textured
backgrounds, with SPIN-format annotations and Graphonomy-style colour masks.

Per sample (``render_batch``):
  * gender 50/50 male/female (the gendered free body model renders it), betas N(0, 1) clipped to
    +-2.5 (the first 10), a body pose from :mod:`dsr.data.pose_sampler` (joint limits, activity
    modes, capsule self-crossing rejection), a global orientation upright in the OpenCV camera
    with a random yaw, an outfit ``dsr.body.outfits.sample_outfit`` (per-face Graphonomy label);
  * a pinhole camera: image H x W from ``IMAGE_SIZES`` (a few hundred pixels), focal length
    U(0.9, 1.5) x max(H, W), principal point at the image centre; the person is placed at the
    depth where its bbox fills 50-85 % of the image and shifted at random inside it (whole body
    visible, at least 2 px from the border);
  * hard rasterization (``dsr.rendering.rasterize``): the label image = outfit label of the
    front face of every pixel (0 = background): exact palette colours, no anti-aliasing;
  * the image: a procedural background (gradient, low-frequency noise, random shapes, an
    optional floor), the body coloured per label (skin tone, hair colour, garment colours,
    per-face jitter) and Lambert-shaded from the face normals with a random light, then a light
    blur and sensor noise (the image only: the mask stays exact);
  * annotations, with OpenCV's pixel convention (pixel (r, c) is centred at (c, r); the
    rasterizer's centres are at +0.5, subtracted here): ``part`` (24, 3) and ``openpose``
    (25, 3) = the 49 joints (GT joints 25..48, OpenPose 0..24) projected, conf 1;
    ``S`` (24, 4) = the 24 GT joints in camera metres minus the pelvis (GT joint 14), conf 1;
    ``pose`` (72,) axis-angle with the root in the camera frame; ``shape`` (10,); ``center``/
    ``scale`` = the 24-joint bbox centre and 1.2 x its longer side / 200 (SPIN's rule).

Second domain (``SynthSettings(domain='b')``, ``make_synthetic.py --domain b``): people who differ
from the default (domain a) as COCO's differ from Human3.6M's, for the paper's setting in
miniature (3D supervision on domain a, 2D keypoints + masks only on domain b; studies/ablation.py):
  * poses: activity modes ``pose_sampler.MODES_B`` (no 'stand'; 'reach' 0.35, 'crouch' 0.25,
    'walk' 0.15, 'free' 0.25 against a's 0.12 / 0.08 / 0.25 / 0.30 and 'stand' 0.25), pitch and
    roll N(0, 15 deg) clipped at 35 deg (a: N(0, 8 deg), 20 deg);
  * clothing: outfits from ``outfits.OUTFIT_PROBS_B`` (coats, dresses, skirts, shorts, hats and bare
    feet far more often); hat and garments striped: two colours alternating in bands of 4-12 cm
    along the body's own vertical axis (a: one flat colour per label); a colour cast of the light
    (x U(0.85, 1.15) per channel) and harder shading (0.15 + 0.85 cos against a's 0.3 + 0.7 cos);
  * backgrounds: ``outdoor_texture`` (sky gradient, horizon, grass or earth ground, soft foliage
    blobs) instead of ``background_texture`` (gradient, noise, rectangles / ellipses / lines,
    tiled floor);
  * seeds: chunk k draws from ``SeedSequence([seed, split, k, 1])``, so the same seed gives other
    people than domain a (whose data stay bit-for-bit those of before the option existed).
  Camera, image sizes, body shapes and genders follow domain a's distributions.

``make_synthetic(out_dir, npz_dir, n_train, n_test, seed, workers=1)`` writes
``out_dir/images/{train,test}/NNNNNN.jpg``, ``out_dir/grph_sequences/images/{train,test}/NNNNNN.png``
and ``npz_dir/synthetic_train.npz`` (imgname, center, scale, part, openpose, S, pose, shape,
has_smpl, gender) and ``npz_dir/synthetic_test.npz`` (3DPW form: imgname, center, scale, pose,
shape, gender, part, openpose, has_smpl). Seeded: the same seed gives the same dataset.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm import tqdm

from dsr.constants import GRAPHONOMY_PALETTE, SMPL_PARENTS
from dsr.data.pose_sampler import sample_global_orient, sample_poses

__all__ = ["SynthSettings", "load_body_models", "render_batch", "background_texture", "outdoor_texture",
           "make_synthetic", "write_split", "DEFAULT_BODY_DIR", "DOMAINS", "GARMENT_LABELS"]

DEFAULT_BODY_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "free_body")
IMAGE_SIZES = ((320, 320), (288, 384), (384, 288))  # (H, W)
PELVIS = 14  # index of the pelvis among the 24 GT joints

SKIN_TONES = np.array([[255, 224, 196], [241, 194, 167], [224, 172, 138], [198, 134, 96], [160, 102, 68],
                       [120, 75, 50], [90, 56, 38]], np.float32)
HAIR_COLOURS = np.array([[30, 25, 20], [70, 45, 30], [120, 80, 45], [200, 170, 110], [150, 60, 30],
                         [160, 160, 160]], np.float32)
SKIN_LABELS = (10, 13, 14, 15, 16, 17)  # torso skin, face, arms, legs


GARMENT_LABELS = (1, 5, 6, 7, 9, 12)  # hat, upper clothes, dress, coat, pants, skirt: striped in domain b
DOMAINS = ("a", "b")


@dataclass
class SynthSettings:
    image_sizes: tuple = IMAGE_SIZES
    focal_range: tuple = (0.9, 1.5)  # x max(H, W)
    fill_range: tuple = (0.5, 0.85)  # person bbox / image size
    bbox_factor: float = 1.2  # SPIN: scale = 1.2 * bbox side / 200
    batch_size: int = 25
    jpeg_quality: int = 92
    domain: str = "a"  # 'a' = the embedded default; 'b' = the second domain (module docstring)

    def __post_init__(self):
        if self.domain not in DOMAINS:
            raise ValueError(f"SynthSettings.domain must be one of {DOMAINS}, got {self.domain!r}")


def load_body_models(body_dir: str = DEFAULT_BODY_DIR):
    """{'male', 'female', 'neutral'} -> BodyModel of ``<body_dir>/smpl`` with the 49 joints, and
    the (F,) face part ids of the outfit model (``<body_dir>/face_parts.npy``)."""
    from dsr.body import build_body_model
    from dsr.body.outfits import load_face_parts

    smpl_dir = os.path.join(body_dir, "smpl")
    extra = os.path.join(body_dir, "J_regressor_extra.npy")
    models = {g: build_body_model(smpl_dir, g, extra_regressor_path=extra).eval() for g in ("male", "female", "neutral")}
    parts = load_face_parts(os.path.join(body_dir, "face_parts.npy"))
    F = models["neutral"].num_faces
    if len(parts) != F:
        raise ValueError(f"{body_dir}/face_parts.npy has {len(parts)} faces, the body model {F}")
    return models, parts


def _aa_to_rotmat(aa: np.ndarray) -> torch.Tensor:
    from dsr.geometry import batch_rodrigues
    return batch_rodrigues(torch.as_tensor(aa, dtype=torch.float32).reshape(-1, 3))


@torch.no_grad()
def _forward(model, global_orient, body_pose, betas):
    B = len(betas)
    out = model(global_orient=_aa_to_rotmat(global_orient).reshape(B, 1, 3, 3),
                body_pose=_aa_to_rotmat(body_pose).reshape(B, -1, 3, 3),
                betas=torch.as_tensor(betas, dtype=torch.float32))
    return out


def _skeleton(model, poses: np.ndarray) -> np.ndarray:
    """(m, 72) poses -> (m, 24, 3) skeleton joints of the mean shape by forward kinematics only."""
    from scipy.spatial.transform import Rotation

    if not hasattr(model, "_rest_joints_np"):
        sm = model.smpl
        model._rest_joints_np = (sm.J_regressor @ sm.v_template).double().numpy()
    rest = model._rest_joints_np
    m = len(poses)
    R = Rotation.from_rotvec(np.asarray(poses, np.float64).reshape(-1, 3)).as_matrix().reshape(m, -1, 3, 3)
    Rg = np.zeros_like(R)
    pos = np.zeros((m, len(SMPL_PARENTS), 3))
    for j, par in enumerate(SMPL_PARENTS):
        if par < 0:
            Rg[:, j] = R[:, j]
            pos[:, j] = rest[j]
        else:
            Rg[:, j] = Rg[:, par] @ R[:, j]
            pos[:, j] = pos[:, par] + Rg[:, par] @ (rest[j] - rest[par])
    return pos


def background_texture(rng: np.random.Generator, H: int, W: int) -> np.ndarray:
    """(H, W, 3) uint8 procedural background: gradient + low-frequency noise + shapes + floor."""
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    t = ((xx / W - 0.5) * np.cos(ang) + (yy / H - 0.5) * np.sin(ang) + 0.75) / 1.5
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    cells = int(rng.integers(3, 12))
    lf = rng.normal(0, rng.uniform(8, 30), (cells, cells, 3)).astype(np.float32)
    img += cv2.resize(lf, (W, H), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.uniform() < 0.6:  # a floor with a tiled texture
        y0 = int(H * rng.uniform(0.55, 0.9))
        tile = int(rng.integers(12, 48))
        ca, cb = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
        checker = (((xx[y0:] // tile) + ((yy[y0:] - y0) // (tile * 0.6))) % 2)[..., None]
        img[y0:] = (ca * checker + cb * (1 - checker)).astype(np.uint8)
    for _ in range(int(rng.integers(3, 12))):  # shapes: walls, frames, furniture-like blocks
        col = tuple(float(c) for c in rng.uniform(0, 255, 3))
        x0, y0 = int(rng.integers(0, W)), int(rng.integers(0, H))
        w, h = int(rng.integers(10, W // 2)), int(rng.integers(10, H // 2))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), col, -1)
        elif kind == 1:
            cv2.ellipse(img, (x0, y0), (w // 2, h // 2), float(rng.uniform(0, 180)), 0, 360, col, -1)
        else:
            cv2.line(img, (x0, y0), (x0 + w, y0 + h), col, int(rng.integers(2, 10)))
    return img


def outdoor_texture(rng: np.random.Generator, H: int, W: int) -> np.ndarray:
    """(H, W, 3) uint8 background of domain b: a blue sky gradient above a horizon at 30-60 % of
    the height, textured ground below (grass or earth colours, fine noise), soft dark-green blobs
    (foliage) along the horizon; no straight-edged shapes or tiled floors (domain a's)."""
    yy = np.mgrid[0:H, 0:W][0].astype(np.float32)
    hz = int(H * rng.uniform(0.3, 0.6))
    sky_top = rng.uniform([60, 110, 170], [140, 180, 240])
    sky_low = rng.uniform([170, 190, 200], [235, 235, 250])
    t = np.clip(yy / max(hz, 1), 0.0, 1.0)[..., None]
    img = sky_top[None, None] * (1 - t) + sky_low[None, None] * t
    grass = rng.uniform() < 0.6
    ground = rng.uniform([40, 70, 20], [120, 150, 70]) if grass else rng.uniform([90, 80, 60], [170, 150, 120])
    fine = cv2.GaussianBlur(rng.normal(0, rng.uniform(10, 25), (H, W)).astype(np.float32), (3, 3), 0.8)
    cells = int(rng.integers(3, 8))
    low = cv2.resize(rng.normal(0, 15, (cells, cells)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    img[hz:] = ground[None, None] + (fine + low)[hz:, :, None]
    blobs = np.zeros((H, W), np.float32)
    for _ in range(int(rng.integers(2, 8))):
        c = (int(rng.integers(0, W)), int(hz + rng.uniform(-0.1, 0.05) * H))
        axes = (int(rng.uniform(0.05, 0.2) * W), int(rng.uniform(0.04, 0.15) * H))
        cv2.ellipse(blobs, c, axes, 0.0, 0, 360, 1.0, -1)
    blobs = cv2.GaussianBlur(blobs, (0, 0), float(rng.uniform(2, 5)))[..., None]
    leaf = rng.uniform([20, 50, 15], [70, 110, 50])
    img = img * (1 - blobs) + (leaf[None, None] + 0.5 * fine[..., None]) * blobs
    return np.clip(img, 0, 255).astype(np.uint8)


def _face_base_colours(outfit: np.ndarray, cols: np.ndarray, cols2: np.ndarray | None = None,
                       height: np.ndarray | None = None, period: float = 0.08) -> np.ndarray:
    """(F, 3) colour of every face before jitter and shading: its label's colour in ``cols``
    (20, 3). With ``cols2`` (domain b) the garment faces (GARMENT_LABELS) alternate in bands of
    ``period`` metres of ``height`` (F,) (along the body's own vertical axis): even bands
    ``cols``, odd bands ``cols2`` (stripes)."""
    rgb = cols[outfit]
    if cols2 is not None:
        odd = np.floor(height / period).astype(np.int64) % 2 == 1
        sel = odd & np.isin(outfit, GARMENT_LABELS)
        rgb[sel] = cols2[outfit[sel]]
    return rgb


def _label_colours(rng: np.random.Generator) -> np.ndarray:
    """(20, 3) float RGB colour of every Graphonomy label for one person."""
    cols = rng.uniform(15, 240, (20, 3)).astype(np.float32)
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.08)
    cols[list(SKIN_LABELS)] = skin
    cols[2] = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
    cols[4] = (20, 20, 25)  # sunglasses
    cols[19] = cols[18] = rng.uniform(10, 200, 3)  # a pair of shoes
    return np.clip(cols, 0, 255)


def _place(verts: np.ndarray, joints: np.ndarray, H: int, W: int, f: float, fill: float,
           rng: np.random.Generator):
    """Camera translation t (3,) putting the body (model-frame verts (V, 3)) inside the image."""
    lo, hi = verts.min(0), verts.max(0)
    mid = (lo + hi) / 2
    ext = hi - lo
    z = f * max(ext[0] / W, ext[1] / H) / fill + ext[2] / 2
    for _ in range(20):
        wpx, hpx = f * ext[0] / z, f * ext[1] / z
        uc = rng.uniform(min(wpx / 2 + 4, W / 2), max(W - wpx / 2 - 4, W / 2))
        vc = rng.uniform(min(hpx / 2 + 4, H / 2), max(H - hpx / 2 - 4, H / 2))
        t = np.array([(uc - W / 2) * z / f, (vc - H / 2) * z / f, z]) - mid
        pc = verts + t
        u = f * pc[:, 0] / pc[:, 2] + W / 2
        v = f * pc[:, 1] / pc[:, 2] + H / 2
        if u.min() >= 2 and v.min() >= 2 and u.max() <= W - 2 and v.max() <= H - 2:
            return t
        z *= 1.08
    return t


@torch.no_grad()
def render_batch(models: dict, face_parts: np.ndarray, rng: np.random.Generator, n: int,
                 image_hw: tuple, settings: SynthSettings | None = None) -> list[dict]:
    """Render ``n`` samples of one image size (H, W).

    Returns a list of dicts: image (H, W, 3) uint8 RGB, labels (H, W) int64 (0..19),
    pix_to_face (H, W) long (-1 background), outfit (F,) int64, vertices (V, 3) camera frame,
    joints2d (49, 2) OpenCV pixel coordinates, S (24, 4), pose (72,), shape (10,), gender 'm'/'f',
    center (2,), scale, focal, part (24, 3), openpose (25, 3).
    """
    from dsr.body.outfits import sample_outfit
    from dsr.rendering import rasterize

    from dsr.body.outfits import OUTFIT_PROBS_B
    from dsr.data.pose_sampler import MODES_B

    settings = settings or SynthSettings()
    b = settings.domain == "b"
    H, W = image_hw
    genders = np.where(rng.uniform(size=n) < 0.5, "male", "female")
    betas = np.clip(rng.standard_normal((n, 10)), -2.5, 2.5).astype(np.float32)
    neutral = models["neutral"]
    poses = sample_poses(rng, n, lambda p: _skeleton(neutral, p), modes=MODES_B if b else None)
    poses[:, :3] = sample_global_orient(rng, n, *((15.0, 35.0) if b else ()))
    faces = neutral.faces.long()
    F = faces.shape[0]
    verts = np.zeros((n, neutral.num_vertices, 3), np.float32)
    joints = np.zeros((n, 49, 3), np.float32)
    for g in ("male", "female"):
        idx = np.nonzero(genders == g)[0]
        if len(idx) == 0:
            continue
        out = _forward(models[g], poses[idx, :3], poses[idx, 3:], betas[idx])
        verts[idx] = out.vertices.numpy()
        joints[idx] = out.joints.numpy()
    focal = rng.uniform(*settings.focal_range, n) * max(H, W)
    fill = rng.uniform(*settings.fill_range, n)
    trans = np.stack([_place(verts[i], joints[i], H, W, focal[i], fill[i], rng) for i in range(n)])
    vcam = torch.from_numpy(verts + trans[:, None].astype(np.float32))
    jcam = joints + trans[:, None].astype(np.float32)
    cc = torch.tensor([[W / 2.0, H / 2.0]]).repeat(n, 1)
    ras = rasterize(vcam, torch.zeros(n, 3), faces, (H, W), focal_length=torch.as_tensor(focal, dtype=torch.float32),
                    backend="window", camera_center=cc)
    p2f_all = ras.pix_to_face.numpy()

    # face normals in the camera frame, turned towards the camera
    tri = vcam[:, faces]  # (n, F, 3, 3)
    nrm = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    nrm = torch.nn.functional.normalize(nrm, dim=-1)
    cen = tri.mean(2)
    nrm = torch.where(((nrm * cen).sum(-1, keepdim=True) > 0), -nrm, nrm).numpy()

    if b:  # face centroids' height along each body's own vertical axis (the stripes of domain b)
        R = _aa_to_rotmat(poses[:, :3]).numpy()  # (n, 3, 3) global orientation
        cen_model = torch.from_numpy(verts)[:, faces].mean(2).numpy()  # (n, F, 3)
        height = np.einsum("nfk,nk->nf", cen_model, R[:, :, 1])  # R's column 1: the body's up axis

    samples = []
    for i in range(n):
        outfit = sample_outfit(rng, str(genders[i]), face_parts=face_parts, table=OUTFIT_PROBS_B if b else None)
        p2f = p2f_all[i]
        hit = p2f >= 0
        labels = np.zeros((H, W), np.int64)
        labels[hit] = outfit[p2f[hit]]
        light = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.9, 0.2), -1.0])
        light /= np.linalg.norm(light)
        lambert = np.clip(nrm[i] @ light, 0.0, 1.0)  # (F,)
        shade = (0.15 + 0.85 * lambert) if b else (0.3 + 0.7 * lambert)  # domain b: harder light
        cols = _label_colours(rng)
        if b:
            cols2 = _label_colours(rng)
            base = _face_base_colours(outfit, cols, cols2, height[i], float(rng.uniform(0.04, 0.12)))
            base = base * rng.uniform(0.85, 1.15, 3).astype(np.float32)  # a colour cast of the light
        else:
            base = _face_base_colours(outfit, cols)
        jitter = rng.uniform(0.93, 1.07, (F, 1)).astype(np.float32)
        face_rgb = base * jitter * shade[:, None].astype(np.float32)  # (F, 3)
        img = (outdoor_texture if b else background_texture)(rng, H, W).astype(np.float32)
        img[hit] = face_rgb[p2f[hit]]
        img = cv2.GaussianBlur(img, (3, 3), 0.6)
        img += rng.normal(0, 2.5, img.shape).astype(np.float32)
        image = np.clip(img, 0, 255).astype(np.uint8)

        j = jcam[i]
        u = focal[i] * j[:, 0] / j[:, 2] + W / 2 - 0.5  # OpenCV pixel-centre convention
        v = focal[i] * j[:, 1] / j[:, 2] + H / 2 - 0.5
        kp = np.stack([u, v, np.ones(49)], 1).astype(np.float32)
        part = kp[25:]
        lo, hi = part[:, :2].min(0), part[:, :2].max(0)
        S = np.concatenate([j[25:] - j[25 + PELVIS], np.ones((24, 1), np.float32)], 1)
        samples.append(dict(
            image=image, labels=labels, pix_to_face=p2f, outfit=outfit, vertices=vcam[i].numpy(),
            joints2d=kp[:, :2], part=part, openpose=kp[:25], S=S.astype(np.float32),
            pose=poses[i].astype(np.float32), shape=betas[i], gender="m" if genders[i] == "male" else "f",
            center=((lo + hi) / 2).astype(np.float32),
            scale=np.float32(settings.bbox_factor * (hi - lo).max() / 200.0), focal=float(focal[i]),
        ))
    return samples


_WORKER_CACHE: dict = {}
_KEYS = ("imgname", "center", "scale", "part", "openpose", "S", "pose", "shape", "gender")
_SPLIT_IDS = {"train": 0, "test": 1}


def _chunk_rng(seed: int, split: str, chunk: int, domain: str = "a") -> np.random.Generator:
    """Chunk k of a split draws from SeedSequence([seed, split, k]) (domain a), or
    [seed, split, k, 1] (domain b: the same seed gives other people than domain a's)."""
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_IDS[split], chunk]
                                                        + ([DOMAINS.index(domain)] if domain != "a" else [])))


def _render_chunk(job) -> dict:
    """Render and write one chunk; returns its records (lists keyed by _KEYS)."""
    out_dir, split, chunk, start, count, seed, body_dir, settings, threads = job
    if threads:
        torch.set_num_threads(threads)
        cv2.setNumThreads(1)
    key = os.path.abspath(body_dir)
    if key not in _WORKER_CACHE:
        _WORKER_CACHE.clear()
        _WORKER_CACHE[key] = load_body_models(body_dir)
    models, face_parts = _WORKER_CACHE[key]
    rng = _chunk_rng(seed, split, chunk, settings.domain)
    hw = settings.image_sizes[int(rng.integers(len(settings.image_sizes)))]
    mask_dir = os.path.join(out_dir, "grph_sequences", "images", split)
    palette_bgr = GRAPHONOMY_PALETTE[:, ::-1].copy()
    rec = {k: [] for k in _KEYS}
    for j, s in enumerate(render_batch(models, face_parts, rng, count, hw, settings)):
        idx = start + j
        name = f"images/{split}/{idx:06d}.jpg"
        ok = cv2.imwrite(os.path.join(out_dir, name), s["image"][:, :, ::-1],
                         [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality])
        mpath = os.path.join(mask_dir, f"{idx:06d}.png")
        ok = ok and cv2.imwrite(mpath, palette_bgr[s["labels"]], [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise OSError(f"cv2.imwrite failed writing {name} or {mpath} under {out_dir}")
        rec["imgname"].append(name)
        for k in _KEYS[1:]:
            rec[k].append(s[k])
    return rec


def write_split(out_dir: str, npz_path: str, split: str, n: int, seed: int = 0, body_dir: str = DEFAULT_BODY_DIR,
                settings: SynthSettings | None = None, progress: bool = True, workers: int = 1) -> dict:
    """Render and write ``n`` samples of ``split`` ('train' | 'test'); returns the npz arrays.

    Samples are rendered in chunks of ``settings.batch_size`` (one image size per chunk), chunk k
    drawing from ``SeedSequence([seed, split, k])``: the output does not depend on ``workers``
    (> 1 renders chunks in that many spawned processes, one torch thread each).
    """
    settings = settings or SynthSettings()
    os.makedirs(os.path.join(out_dir, "images", split), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "grph_sequences", "images", split), exist_ok=True)
    bs = settings.batch_size
    jobs = [(out_dir, split, k, start, min(bs, n - start), seed, body_dir, settings, 1 if workers > 1 else 0)
            for k, start in enumerate(range(0, n, bs))]
    bar = tqdm(total=n, desc=f"synthetic {split}", disable=not progress, unit="img")
    results = {}
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for job, rec in zip(jobs, pool.imap(_render_chunk, jobs)):
                results[job[2]] = rec
                bar.update(job[4])
    else:
        for job in jobs:
            results[job[2]] = _render_chunk(job)
            bar.update(job[4])
    bar.close()
    rec = {k: [v for c in range(len(jobs)) for v in results[c][k]] for k in _KEYS}
    data = {k: np.asarray(v) for k, v in rec.items()}
    data["imgname"] = data["imgname"].astype(str)
    data["gender"] = data["gender"].astype(str)
    data["has_smpl"] = np.ones(n, np.float32)
    if split == "test":  # 3DPW form: no S
        data.pop("S")
    os.makedirs(os.path.dirname(os.path.abspath(npz_path)), exist_ok=True)
    np.savez(npz_path, **data)
    return data


def make_synthetic(out_dir: str, npz_dir: str | None = None, n_train: int = 2000, n_test: int = 500, seed: int = 0,
                   body_dir: str = DEFAULT_BODY_DIR, progress: bool = True, settings: SynthSettings | None = None,
                   train_name: str = "synthetic_train.npz", test_name: str = "synthetic_test.npz",
                   workers: int = 1) -> dict:
    """Write the synthetic train and test splits (see the module docstring); returns the npz paths."""
    npz_dir = npz_dir or out_dir
    for rel in ("smpl", "J_regressor_extra.npy", "face_parts.npy"):
        if not os.path.exists(os.path.join(body_dir, rel)):
            raise FileNotFoundError(f"free body asset missing: {os.path.join(body_dir, rel)} "
                                    "(build it with tools/build_free_body.py)")
    paths = {}
    for split, n, name in (("train", n_train, train_name), ("test", n_test, test_name)):
        if n > 0:
            paths[split] = os.path.join(npz_dir, name)
            write_split(out_dir, paths[split], split, n, seed, body_dir, settings, progress, workers)
    return paths
