#!/usr/bin/env python
"""Check every file a config will read, print a table, exit non-zero naming each problem.

    python tools/check_data.py --cfg configs/dsr_train.cfg [--cfg-id 0] [--samples 20] [--all]

Checked: the SMPL model files (three genders), J_regressor_extra / J_regressor_h36m (shape
(rows, V)), smpl_mean_params (pose 144, shape 10, cam 3), the semantic prior (F, 20) with rows
summing to 1 (METHOD 'dsr'), TRAINING.PRETRAINED / RESUME and the backbone weights when set,
and each dataset the run reads (training: TRAIN_DS, 'all' = the §5.1 mixture, unless RUN_TEST;
evaluation: VAL_DS): npz keys, shapes and dtypes; a sample of images (exist, decode) and, for
DSR training, of Graphonomy masks (decode, same size as the image, palette colours only) plus the
count of missing masks against DATASET.MAX_MISSING_MASK_FRACTION, the mask coverage of the rows,
the label histogram of the sampled masks and the share of sampled rows whose DSR-MC / DSR-C
targets come out empty (a problem when every DSR-MC target is). Evaluation sets whose protocol
needs more (``emdb-1`` / ``emdb-2``: pose, shape, gender, sequence, frame; ``ssp-3d``: shape,
gender, silhouette): those keys present with their shapes, and a sample of the silhouettes (exist,
decode, same size as their image).

Each problem is printed with where its file comes from (:func:`where_to_get`). ``train.py`` runs
the same checks (:func:`run` with a small sample) before it creates a run directory and exits 2
with this list when a file is missing or malformed.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from dsr.constants import GRAPHONOMY_PALETTE, MIXTURE  # noqa: E402


class Report:
    def __init__(self):
        self.rows = []  # (item, path, ok, detail)

    def add(self, item, path, ok, detail=""):
        self.rows.append((item, str(path), bool(ok), detail))

    @property
    def problems(self):
        return [r for r in self.rows if not r[2]]

    def print(self):
        w0 = max([len(r[0]) for r in self.rows] + [4])
        w1 = min(70, max([len(r[1]) for r in self.rows] + [4]))
        print(f"{'item':<{w0}}  {'path':<{w1}}  status  detail")
        print("-" * (w0 + w1 + 20))
        for item, path, ok, detail in self.rows:
            p = path if len(path) <= w1 else "..." + path[-(w1 - 3):]
            print(f"{item:<{w0}}  {p:<{w1}}  {'ok' if ok else 'FAIL':<6}  {detail}")


# Where each file comes from, by the report's item name (docs/data.md has the details).
_SOURCES = (
    ("smpl ", "SMPL models: register at https://smpl.is.tue.mpg.de and put SMPL_{NEUTRAL,MALE,FEMALE}.pkl "
              "(v1.1) in PATHS.SMPL_MODEL_DIR"),
    ("J_regressor_", "SPIN's data release (github.com/nkolot/SPIN, fetch_data.sh: data/J_regressor_*.npy)"),
    ("smpl_mean_params", "SPIN's data release (github.com/nkolot/SPIN, fetch_data.sh: data/smpl_mean_params.npz)"),
    ("semantic_prior", "DSR's release (github.com/saidwivedi/DSR, dsr_data.zip: semantic_prior.npy)"),
    ("TRAINING.PRETRAINED", "a released DSR checkpoint (DSR's dsr_data.zip: dsr_w3DPW_checkpoint.pt, "
                            "dsr_wo3DPW_checkpoint.pt) or a checkpoint of yours"),
    ("TRAINING.RESUME", "the last.ckpt of an earlier run of yours"),
    ("backbone ", "torchvision's ImageNet ResNet-50 / the COCO pose HRNet-W32 weights (docs/training.md)"),
)
EMBEDDED_DEFAULT_HINT = ("without any licensed file the embedded default runs end to end: bash scripts/quickstart.sh "
                         "(docs/embedded-default.md)")


def where_to_get(item: str) -> str:
    """One line saying where the file of report item ``item`` comes from."""
    for prefix, hint in _SOURCES:
        if item.startswith(prefix):
            return hint
    name = item.split(" ")[0]
    if name.startswith("synthetic"):
        return "the embedded default's synthetic data: bash prepare_data.sh"
    if "mask" in item or item.endswith("DSR targets"):
        return "Graphonomy masks: python tools/make_parsing_masks.py (docs/parsing.md)"
    if item.endswith((" root", " images")):
        return f"the images of {name} from the dataset's own site (docs/data.md)"
    raw = {"3dpw": "3dpw", "coco": "coco", "h36m": "h36m", "mpi": "mpi-inf-3dhp"}
    cmd = next((v for k, v in raw.items() if name.startswith(k)), None)
    return (f"python -m dsr.data.preprocess {cmd} on the raw download (docs/data.md)" if cmd else "docs/data.md") \
        + "; or SPIN's / DSR's npz files (dataset_extras/)"


def print_problems(rep: Report, cfg_path: str, file=sys.stderr) -> None:
    """The problems of ``rep``, each with its path, what is wrong and where to get the file."""
    print(f"{len(rep.problems)} problem(s) with the files of {cfg_path}:", file=file)
    for item, path, _, detail in rep.problems:
        print(f"  - {item}: {path}: {detail}\n      get it: {where_to_get(item)}", file=file)
    print(f"Check again with: python tools/check_data.py --cfg {cfg_path}; {EMBEDDED_DEFAULT_HINT}", file=file)


def _check(rep, item, path, fn):
    """Run fn(path) -> detail str; record ok, or FAIL with the exception text."""
    try:
        rep.add(item, path, True, fn(path) or "")
    except Exception as e:  # noqa: BLE001 - report everything
        rep.add(item, path, False, f"{type(e).__name__}: {e}")


def check_body(rep, cfg):
    from dsr.body.smpl_io import find_model_file, load_smpl_data

    V = F = None
    for g in ("neutral", "male", "female"):
        try:
            path = find_model_file(cfg.PATHS.SMPL_MODEL_DIR, g)
        except Exception as e:  # noqa: BLE001
            if not os.path.isdir(cfg.PATHS.SMPL_MODEL_DIR):  # one row for the missing folder, not three
                rep.add("smpl models", cfg.PATHS.SMPL_MODEL_DIR, False, str(e))
                break
            rep.add(f"smpl {g}", cfg.PATHS.SMPL_MODEL_DIR, False, str(e))
            continue

        def fn(p):
            nonlocal V, F
            d = load_smpl_data(p)
            V, F = len(d["v_template"]), len(d["f"])
            return f"V={V} F={F} J={np.asarray(d['kintree_table']).shape[1]}"
        _check(rep, f"smpl {g}", path, fn)

    def regressor(rows):
        def fn(p):
            if not os.path.isfile(p):
                raise FileNotFoundError("missing")
            r = np.load(p, allow_pickle=False)
            if r.ndim != 2 or r.shape[0] != rows or (V is not None and r.shape[1] != V):
                raise ValueError(f"shape {r.shape}, expected ({rows}, {V or 'V'})")
            return f"shape {r.shape}"
        return fn

    _check(rep, "J_regressor_extra", cfg.PATHS.JOINT_REGRESSOR_TRAIN_EXTRA, regressor(9))
    _check(rep, "J_regressor_h36m", cfg.PATHS.JOINT_REGRESSOR_H36M, regressor(17))

    def mean_params(p):
        if not os.path.isfile(p):
            raise FileNotFoundError("missing")
        d = np.load(p, allow_pickle=False)
        want = {"pose": (144,), "shape": (10,), "cam": (3,)}
        for k, s in want.items():
            if k not in d.files:
                raise KeyError(f"missing key '{k}'")
            if np.asarray(d[k]).reshape(-1).shape != s:
                raise ValueError(f"key '{k}' has shape {d[k].shape}, expected {s}")
        return "pose (144,), shape (10,), cam (3,)"
    _check(rep, "smpl_mean_params", cfg.PATHS.SMPL_MEAN_PARAMS, mean_params)

    if cfg.METHOD == "dsr":
        def prior(p):
            if not os.path.isfile(p):
                raise FileNotFoundError("missing")
            a = np.squeeze(np.load(p, allow_pickle=False))
            if a.ndim != 2 or a.shape[1] != 20 or (F is not None and a.shape[0] not in (F, V)):
                raise ValueError(f"shape {a.shape}, expected ({F or 'F'}, 20)")
            s = a.sum(1)
            if np.abs(s - 1).max() > 1e-3:
                raise ValueError(f"rows must sum to 1 (range {s.min():.4f}..{s.max():.4f})")
            return f"shape {a.shape}"
        _check(rep, "semantic_prior", cfg.PATHS.SEMANTIC_PRIOR, prior)


def check_optional_files(rep, cfg):
    from dsr.models.backbone import weights_key

    def exists(p):
        if not os.path.isfile(p):
            raise FileNotFoundError("missing")
        return f"{os.path.getsize(p) / 2**20:.1f} MiB"
    for key in ("PRETRAINED", "RESUME"):
        v = cfg.TRAINING[key]
        if v:
            _check(rep, f"TRAINING.{key}", v, exists)
    bb = cfg[cfg.METHOD.upper()].BACKBONE if cfg.METHOD.upper() in cfg else None
    w = cfg.PATHS.BACKBONE_WEIGHTS.get(weights_key(bb), "") if bb else ""
    if w:
        _check(rep, f"backbone {bb}", w, exists)


def _sample_rows(n, k, all_):
    if all_ or n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


def check_dataset(rep, cfg, name, is_train, k, all_):
    from dsr.data import graphonomy as G
    from dsr.data.base_dataset import dataset_npz_path, dataset_root, load_spin_npz

    split = "train" if is_train else "eval"
    try:
        npz = dataset_npz_path(cfg, name, is_train)
        root = dataset_root(cfg, name)
    except Exception as e:  # noqa: BLE001
        rep.add(f"{name} ({split})", "-", False, str(e))
        return
    try:
        data = load_spin_npz(npz)
    except Exception as e:  # noqa: BLE001
        rep.add(f"{name} npz", npz, False, str(e))
        return
    n = len(data["imgname"])
    bad_dtype = [key for key in ("center", "scale", "part", "openpose", "S", "pose", "shape", "has_smpl")
                 if key in data and not np.issubdtype(data[key].dtype, np.number)]
    if data["imgname"].dtype.kind not in "UOS":
        bad_dtype.append("imgname")
    if bad_dtype:
        rep.add(f"{name} npz", npz, False, f"keys {bad_dtype} have the wrong dtype")
    else:
        rep.add(f"{name} npz", npz, True, f"{n} samples, keys {sorted(data)}")
    if not os.path.isdir(root):
        rep.add(f"{name} root", root, False, "dataset folder missing")
        return
    rows = _sample_rows(n, k, all_)
    img_bad, mask_bad, sizes = [], [], {}
    for i in rows:
        name_i = str(data["imgname"][i])
        p = os.path.join(root, name_i)
        img = cv2.imread(p, cv2.IMREAD_COLOR) if os.path.isfile(p) else None
        if img is None:
            img_bad.append(f"{p} ({'missing' if not os.path.isfile(p) else 'cannot decode'})")
            continue
        sizes[name_i] = img.shape[:2]
    rep.add(f"{name} images", root, not img_bad,
            f"{len(rows) - len(img_bad)}/{len(rows)} sampled images ok" + (": " + "; ".join(img_bad[:5]) if img_bad else ""))
    if not is_train and name in PROTOCOL_KEYS:
        check_protocol_keys(rep, name, npz, root, rows, sizes)
    if not (is_train and cfg.METHOD == "dsr"):
        return
    uniq = np.unique(data["imgname"].astype(str))
    missing = [u for u in uniq if not os.path.isfile(G.mask_path(root, u))]
    frac = len(missing) / max(1, len(uniq))
    lim = float(cfg.DATASET.MAX_MISSING_MASK_FRACTION)
    rep.add(f"{name} masks present", os.path.join(root, "grph_sequences"), frac <= lim,
            f"{len(uniq) - len(missing)}/{len(uniq)} present" + (f", {len(missing)} missing (e.g. {G.mask_path(root, missing[0])}),"
                                                                 f" limit {100 * lim:.1f}%" if missing else ""))
    pal = {tuple(c) for c in GRAPHONOMY_PALETTE.tolist()}
    for i in rows:
        name_i = str(data["imgname"][i])
        mp = G.mask_path(root, name_i)
        if not os.path.isfile(mp) or name_i not in sizes:
            continue
        m = cv2.imread(mp, cv2.IMREAD_COLOR)
        if m is None:
            mask_bad.append(f"{mp} (cannot decode)")
            continue
        if m.shape[:2] != sizes[name_i]:
            mask_bad.append(f"{mp} (size {m.shape[:2]} != image {sizes[name_i]})")
            continue
        cols = {tuple(c) for c in np.unique(m[:, :, ::-1].reshape(-1, 3), axis=0).tolist()}
        other = cols - pal
        if other:
            mask_bad.append(f"{mp} ({len(other)} non-palette colours, e.g. {sorted(other)[0]})")
    rep.add(f"{name} masks", os.path.join(root, "grph_sequences"), not mask_bad,
            "sampled masks decode, match their image size, palette colours only" if not mask_bad
            else "; ".join(mask_bad[:5]) + (f" (+{len(mask_bad) - 5} more)" if len(mask_bad) > 5 else ""))
    mask_statistics(rep, cfg, name, root, data["imgname"].astype(str), [i for i in rows if str(data["imgname"][i]) in sizes])


# keys the EMDB / SSP-3D protocols read beyond the SPIN ones (docs/evaluation.md)
PROTOCOL_KEYS = {
    "emdb-1": ("pose", "shape", "gender", "sequence", "frame"),
    "emdb-2": ("pose", "shape", "gender", "sequence", "frame"),
    "ssp-3d": ("shape", "gender", "silhouette"),
}


def check_protocol_keys(rep, name, npz, root, rows, sizes):
    """The extra keys of an EMDB / SSP-3D evaluation file, and a sample of its silhouettes."""
    from dsr.data.eval_dataset import EXTRA_SHAPES

    raw = np.load(npz, allow_pickle=False)
    n = len(raw["imgname"])
    missing = [k for k in PROTOCOL_KEYS[name] if k not in raw.files]
    bad = [f"'{k}' {raw[k].shape} (expected {(n,) + shape})" for k, shape in EXTRA_SHAPES.items()
           if k in raw.files and raw[k].shape != (n,) + shape]
    detail = (f"missing {missing} (run python -m dsr.data.preprocess {'ssp-3d' if name == 'ssp-3d' else 'emdb'})"
              if missing else "") + ("; " if missing and bad else "") + ("shapes: " + ", ".join(bad) if bad else "")
    rep.add(f"{name} protocol keys", npz, not missing and not bad, detail or f"{list(PROTOCOL_KEYS[name])} present")
    if "silhouette" not in raw.files:
        return
    sil_bad = []
    for i in rows:
        p = os.path.join(root, str(raw["silhouette"][i]))
        m = cv2.imread(p, cv2.IMREAD_UNCHANGED) if os.path.isfile(p) else None
        img_size = sizes.get(str(raw["imgname"][i]))
        if m is None:
            sil_bad.append(f"{p} ({'missing' if not os.path.isfile(p) else 'cannot decode'})")
        elif img_size is not None and m.shape[:2] != tuple(img_size):
            sil_bad.append(f"{p} (size {m.shape[:2]} != image {tuple(img_size)})")
    rep.add(f"{name} silhouettes", root, not sil_bad,
            f"{len(rows) - len(sil_bad)}/{len(rows)} sampled silhouettes ok" + (": " + "; ".join(sil_bad[:5]) if sil_bad else ""))


def mask_statistics(rep, cfg, name, root, imgnames, rows):
    """Coverage (rows with a mask / rows), the label histogram of the sampled masks, and the share
    of sampled rows whose DSR-MC / DSR-C targets come out empty (the training loader's targets,
    without augmentation). ``rows``: the sampled rows whose image decodes. Problems: a row whose
    targets cannot be built (the training loader would stop there) and every sampled row's DSR-MC
    target empty (the DSR losses would never act on this dataset)."""
    from dsr.constants import GRAPHONOMY_LABELS
    from dsr.data import graphonomy as G
    from dsr.data.base_dataset import BaseDataset

    present = {u: os.path.isfile(G.mask_path(root, u)) for u in np.unique(imgnames)}
    n_rows = len(imgnames)
    with_mask = sum(present[u] for u in imgnames)
    grph = os.path.join(root, "grph_sequences")
    rep.add(f"{name} mask coverage", grph, True, f"{with_mask}/{n_rows} rows ({100 * with_mask / max(1, n_rows):.1f}%)")

    counts = np.zeros(len(GRAPHONOMY_LABELS), dtype=np.int64)
    holders = np.zeros(len(GRAPHONOMY_LABELS), dtype=np.int64)
    n_masks = 0
    for u in np.unique(imgnames[rows]):
        m = cv2.imread(G.mask_path(root, u), cv2.IMREAD_COLOR) if present[u] else None
        if m is None:
            continue
        c = np.bincount(G.decode_colour_mask(np.ascontiguousarray(m[:, :, ::-1])).ravel(), minlength=len(counts))
        counts += c
        holders += c > 0
        n_masks += 1
    if n_masks:
        share = 100 * counts / counts.sum()
        hist = ", ".join(f"{GRAPHONOMY_LABELS[i]} {share[i]:.1f}% ({holders[i]}/{n_masks})"
                         for i in range(len(counts)) if counts[i])
        rep.add(f"{name} mask labels", grph, True, f"pixel share (masks holding it) over {n_masks} sampled masks: {hist}")

    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASET.MAX_MISSING_MASK_FRACTION = 1.0  # counted above; here only the targets matter
    try:
        ds = BaseDataset(cfg, name, is_train=True, use_augmentation=False, with_dsr_targets=True, num_images=0)
    except Exception as e:  # noqa: BLE001 - reported, as every other check
        rep.add(f"{name} DSR targets", grph, False, f"{type(e).__name__}: {e}")
        return
    mc_empty = c_empty = done = 0
    errors = []
    for i in rows:
        try:
            item = ds[int(i)]
        except Exception as e:  # noqa: BLE001
            errors.append(f"row {i}: {e}")
            continue
        done += 1
        mc_empty += float(item["valid_labels_dsr_mc"].sum()) == 0
        c_empty += float(item["dsr_c_class_weight"][1:].sum()) == 0
    detail = (f"of {done} sampled rows, DSR-MC target empty {mc_empty} ({100 * mc_empty / max(1, done):.1f}%), "
              f"DSR-C target empty (no foreground class > {ds.c_min_px:g} px) {c_empty} ({100 * c_empty / max(1, done):.1f}%)")
    if errors:
        detail += f"; {len(errors)} rows failed: " + "; ".join(errors[:3])
    ok = not errors and not (done and mc_empty == done)
    if done and mc_empty == done:
        detail += " - every DSR-MC target is empty: the DSR losses would never act on this dataset"
    rep.add(f"{name} DSR targets", grph, ok, detail)


def run(cfg, samples=20, all_=False) -> Report:
    rep = Report()
    check_body(rep, cfg)
    check_optional_files(rep, cfg)
    if not cfg.RUN_TEST:
        if cfg.DATASET.TRAIN_DS == "all":
            names = MIXTURE[bool(cfg.DATASET.TRAIN_3DPW)][0]
        else:
            names = [cfg.DATASET.TRAIN_DS]
        for name in names:
            check_dataset(rep, cfg, name, True, samples, all_)
    check_dataset(rep, cfg, cfg.DATASET.VAL_DS, False, samples, all_)
    return rep


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", required=True)
    p.add_argument("--cfg-id", type=int, default=0)
    p.add_argument("--samples", type=int, default=20, help="images/masks sampled per dataset")
    p.add_argument("--all", action="store_true", help="check every image and mask")
    a = p.parse_args(argv)
    from dsr.config import load_config

    cfg = load_config(a.cfg, a.cfg_id)
    rep = run(cfg, a.samples, a.all)
    rep.print()
    if rep.problems:
        print(file=sys.stderr)
        print_problems(rep, a.cfg)
        return 1
    print(f"\nall files of {a.cfg} look fine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
