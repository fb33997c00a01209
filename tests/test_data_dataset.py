"""SPIN-format dataset, DSR targets, mixture and loader on tiny fake datasets written to tmp_path."""
import os

import cv2
import numpy as np
import pytest
import torch

from dsr.config import get_cfg_defaults
from dsr.data import BaseDataset, DatasetError, MixedDataset, train_dataloader

FACE = (0, 0, 255)
LEFT_ARM = (51, 170, 221)
UPPER = (255, 85, 0)
LEFT_SHOE = (255, 255, 0)


def _write_dataset(root, npz_path, n=3, size=112, masks=True, mask_size=None, drop=(), extra=None):
    """n images of size x size (RGB fill (200, 100, 50)); a colour mask with a face box
    rows 10..29 x cols 20..39, a leftArm box rows 60..89 x cols 60..89, an upperclothes box rows
    40..59 x cols 30..69, a 3x3 leftShoe box at rows 100..102 x cols 100..102; keypoints
    inside the people box; centre (56, 56), scale 0.56 -> crop pixel = 2 x original pixel."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "grph_sequences", "images"), exist_ok=True)
    names = []
    for i in range(n):
        name = f"images/im{i}.png"
        img = np.zeros((size, size, 3), np.uint8)
        img[:] = (200, 100, 50)
        cv2.imwrite(os.path.join(root, name), img[:, :, ::-1])
        if masks:
            ms = mask_size or size
            m = np.zeros((ms, ms, 3), np.uint8)
            m[10:30, 20:40] = FACE
            m[60:90, 60:90] = LEFT_ARM
            m[40:60, 30:70] = UPPER
            m[100:103, 100:103] = LEFT_SHOE
            cv2.imwrite(os.path.join(root, "grph_sequences", f"images/im{i}.png"), m[:, :, ::-1])
        names.append(name)
    part = np.zeros((n, 24, 3))
    part[:, :, 0] = np.linspace(15.3, 95.6, 24)
    part[:, :, 1] = np.linspace(8.2, 100.9, 24)
    part[:, :, 2] = 1.0
    data = dict(imgname=np.array(names), center=np.tile([56.0, 56.0], (n, 1)), scale=np.full(n, 0.56),
                part=part, openpose=np.zeros((n, 25, 3)),
                S=np.random.default_rng(0).normal(size=(n, 24, 4)),
                pose=np.random.default_rng(1).normal(scale=0.3, size=(n, 72)),
                shape=np.random.default_rng(2).normal(size=(n, 10)))
    if extra:
        data.update(extra)
    for k in drop:
        data.pop(k)
    np.savez(npz_path, **data)
    return data


def _cfg(tmp_path, names=("synthetic",), **kw):
    cfg = get_cfg_defaults()
    cfg.METHOD = "dsr"
    cfg.PATHS.DATASET_NPZ_PATH = str(tmp_path)
    for name in names:
        cfg.PATHS.DATASET_FOLDERS[name] = str(tmp_path / f"root_{name}")
        cfg.PATHS.TRAIN_FILES[name] = f"{name}_train.npz"
        _write_dataset(str(tmp_path / f"root_{name}"), str(tmp_path / f"{name}_train.npz"), **kw)
    return cfg


class _Fixed(BaseDataset):
    """Fixed augmentation parameters."""
    params = (0, np.ones(3), 0.0, 1.0)

    def augm_params(self):
        return self.params


def test_item_keys_shapes_and_values(tmp_path):
    cfg = _cfg(tmp_path)
    ds = _Fixed(cfg, "synthetic", is_train=True)
    it = ds[1]
    assert it["img"].shape == (3, 224, 224) and it["keypoints"].shape == (49, 3)
    assert it["pose"].shape == (72,) and it["betas"].shape == (10,) and it["pose_3d"].shape == (24, 4)
    assert it["grph_dsr_mc_label"].shape == (224, 224) and it["grph_dsr_mc_label"].dtype == torch.float32
    assert it["grph_dsr_c_label"].shape == (224, 224) and it["grph_dsr_c_label"].dtype == torch.int64
    assert it["dsr_c_class_weight"].shape == (8,) and it["valid_labels_dsr_mc"].shape == (5,)
    assert "grph_dsr_mc_dist_mat" in it  # code default DSR_MC_LOSS_TYPE = 'DistM'
    assert it["imgname"] == os.path.join(cfg.PATHS.DATASET_FOLDERS["synthetic"], "images/im1.png")
    assert it["has_smpl"] == 1 and it["has_pose_3d"] == 1 and it["sample_index"] == 1
    # ImageNet normalisation of the constant colour (200, 100, 50) at an interior pixel
    want = (np.array([200, 100, 50]) / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(it["img"][:, 100, 100].numpy(), want, atol=1e-5)
    # keypoints: crop pixel = trunc(2 x) + 1, normalised 2 k / 224 - 1
    x = np.linspace(15.3, 95.6, 24)
    want_x = (np.trunc(2 * x) + 1) * 2 / 224 - 1
    np.testing.assert_allclose(it["keypoints"][25:, 0].numpy(), want_x, atol=1e-6)
    # absent OpenPose keypoints (0, 0, conf 0) -> pixel trunc(0) + 1 = 1 -> 2 / 224 - 1, conf 0
    np.testing.assert_allclose(it["keypoints"][:25].numpy(), np.tile([2 / 224 - 1, 2 / 224 - 1, 0], (25, 1)), atol=1e-6)
    # masks: crop pixel (2y, 2x). Face box rows 20..59, cols 40..79 (interior exact)
    c = it["grph_dsr_c_label"].numpy()
    assert (c[24:56, 44:76] == 1).all()  # head
    assert (c[124:176, 124:176] == 4).all()  # leftArm
    assert (c[84:116, 64:136] == 2).all()  # upperclothes
    # leftShoe 3x3 px -> about 6x6 = 36 px < 60: not valid; face ~40x40 valid; leftArm valid
    assert it["valid_labels_dsr_mc"].tolist() == [0, 0, 1, 0, 1]
    mc = it["grph_dsr_mc_label"].numpy()
    assert mc[40, 60] == 1 and mc[150, 150] == 1 and mc[100, 100] == 0 and mc[202, 202] == 0
    # background removal: keypoints span crop x in [31, 192], y in [17, 202] -> box +-30
    assert (c[:, :1] == 0).all() and (c[:, 223:] == 0).all()
    # the distance transform is 0 on the MC mask and grows off it
    d = it["grph_dsr_mc_dist_mat"].numpy()
    assert d[40, 60] == 0 and d[40, 90] == pytest.approx(90 - 79, abs=1.01)


def test_background_removal_in_dataset(tmp_path):
    cfg = _cfg(tmp_path)
    ds = _Fixed(cfg, "synthetic", is_train=True)
    # only two confident keypoints: crop (41, 41) and (81, 81) -> keep rows/cols 11..111
    kp = np.zeros((3, 49, 3))
    kp[:, 25, :] = [20.3, 20.3, 1.0]
    kp[:, 26, :] = [40.3, 40.3, 0.9]
    kp[:, 27, :] = [105.0, 105.0, 0.2]  # low confidence, ignored
    ds.keypoints = kp
    c = ds[0]["grph_dsr_c_label"].numpy()
    assert (c[24:56, 44:76] == 1).all()  # face inside the box
    assert (c[112:, :] == 0).all() and (c[:, 112:] == 0).all()  # arm and the rest removed
    assert (c[84:112, 64:112] == 2).all()  # upperclothes partly kept
    kp[:, :, 2] = 0.1
    with pytest.raises(DatasetError, match="confidence"):
        ds[0]


def test_flip_masks_faithful_and_swapped(tmp_path):
    cfg = _cfg(tmp_path)
    ds = _Fixed(cfg, "synthetic", is_train=True)
    ds.params = (1, np.ones(3), 0.0, 1.0)
    c = ds[0]["grph_dsr_c_label"].numpy()
    # mirrored columns: leftArm box cols 120..179 -> 44..103, still labelled leftArm (class 4)
    assert (c[124:176, 48:100] == 4).all()
    cfg.DSR.FLIP_SWAP_LR_MASKS = True
    ds2 = _Fixed(cfg, "synthetic", is_train=True)
    ds2.params = (1, np.ones(3), 0.0, 1.0)
    it = ds2[0]
    c2 = it["grph_dsr_c_label"].numpy()
    assert (c2[124:176, 48:100] == 5).all()  # rightArm
    assert it["valid_labels_dsr_mc"].tolist() == [0, 0, 0, 1, 1]
    # flipped keypoints: x negated and permuted
    it0 = _Fixed(cfg, "synthetic", is_train=True)[0]
    from dsr.constants import J49_FLIP_PERM
    np.testing.assert_allclose(it["keypoints"][:, 0].numpy(), -it0["keypoints"][J49_FLIP_PERM, 0].numpy())


def test_missing_masks_counted_and_limited(tmp_path):
    cfg = _cfg(tmp_path)
    os.remove(os.path.join(cfg.PATHS.DATASET_FOLDERS["synthetic"], "grph_sequences/images/im2.png"))
    with pytest.raises(DatasetError, match=r"1 of 3 .*MAX_MISSING_MASK_FRACTION"):
        BaseDataset(cfg, "synthetic", is_train=True)
    cfg.DATASET.MAX_MISSING_MASK_FRACTION = 0.5
    ds = _Fixed(cfg, "synthetic", is_train=True)
    assert ds.missing_masks == 1
    it = ds[2]
    assert it["grph_dsr_c_label"].sum() == 0 and it["valid_labels_dsr_mc"].sum() == 0
    # without DSR targets masks are not needed
    cfg.DATASET.MAX_MISSING_MASK_FRACTION = 0.0
    assert "grph" not in BaseDataset(cfg, "synthetic", is_train=True, with_dsr_targets=False)[2]


def test_bad_inputs_name_the_file(tmp_path):
    cfg = _cfg(tmp_path)
    npz = tmp_path / "synthetic_train.npz"
    root = cfg.PATHS.DATASET_FOLDERS["synthetic"]
    _write_dataset(root, str(npz), drop=("center",))
    with pytest.raises(DatasetError, match=r"synthetic_train.npz.*'center'"):
        BaseDataset(cfg, "synthetic")
    _write_dataset(root, str(npz), extra={"part": np.zeros((3, 23, 3))})
    with pytest.raises(DatasetError, match=r"synthetic_train.npz.*'part' has shape \(3, 23, 3\)"):
        BaseDataset(cfg, "synthetic")
    _write_dataset(root, str(npz), mask_size=100)
    with pytest.raises(DatasetError, match=r"grph_sequences/images/im0.png has size"):
        _Fixed(cfg, "synthetic")[0]
    _write_dataset(root, str(npz))
    os.remove(os.path.join(root, "images/im0.png"))
    with pytest.raises(DatasetError, match=r"image not found: .*images/im0.png"):
        _Fixed(cfg, "synthetic")[0]
    cfg.PATHS.TRAIN_FILES["synthetic"] = "nope.npz"
    with pytest.raises(DatasetError, match="nope.npz"):
        BaseDataset(cfg, "synthetic")
    with pytest.raises(DatasetError, match="unknown dataset"):
        BaseDataset(cfg, "lsp")


def test_no_dist_mat_with_niou_and_test_split(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.DSR.DSR_MC_LOSS_TYPE = "nIOU"
    it = _Fixed(cfg, "synthetic")[0]
    assert "grph_dsr_mc_dist_mat" not in it and "grph_dsr_c_label" in it
    # evaluation split in 3DPW form with gender; no augmentation and no DSR targets
    cfg.PATHS.TEST_FILES["synthetic-test"] = "synthetic_train.npz"
    cfg.PATHS.DATASET_FOLDERS["synthetic-test"] = cfg.PATHS.DATASET_FOLDERS["synthetic"]
    _write_dataset(cfg.PATHS.DATASET_FOLDERS["synthetic"], str(tmp_path / "synthetic_train.npz"),
                   extra={"gender": np.array(["m", "f", "m"])}, drop=("S",))
    te = BaseDataset(cfg, "synthetic-test", is_train=False)
    it = te[1]
    assert it["gender"] == 1 and te[0]["gender"] == 0 and it["has_pose_3d"] == 0 and "grph" not in it
    assert it["is_flipped"] == 0 and float(it["rot_angle"]) == 0 and float(it["scale"]) == pytest.approx(0.56)


def test_num_images_and_drop_last(tmp_path):
    cfg = _cfg(tmp_path)
    ds = BaseDataset(cfg, "synthetic", num_images=10, with_dsr_targets=False)
    assert len(ds) == 10 and set(ds.rows.tolist()) <= {0, 1, 2}
    ds3 = BaseDataset(cfg, "synthetic", with_dsr_targets=False)
    cfg.DATASET.SHUFFLE_TRAIN = False
    dl = train_dataloader(cfg, ds3, batch_size=2, num_workers=0)
    batches = list(dl)
    assert len(batches) == 1 and batches[0]["img"].shape == (2, 3, 224, 224)


def test_mixed_dataset_ratios(tmp_path):
    names = ("h36m", "coco", "mpi-inf-3dhp")
    cfg = _cfg(tmp_path, names=names)
    # coco gets 5 samples so the epoch length is 5
    _write_dataset(cfg.PATHS.DATASET_FOLDERS["coco"], str(tmp_path / "coco_train.npz"), n=5)
    mix = MixedDataset(cfg, rng=np.random.default_rng(0), with_dsr_targets=False)
    assert len(mix) == 5 and mix.dataset_names == list(names)
    counts = {n: 0 for n in names}
    idx = {n: [] for n in names}
    for _ in range(120):
        for i in (4,):
            it = mix[i]
            counts[it["dataset_name"]] += 1
            idx[it["dataset_name"]].append(it["sample_index"])
    frac = np.array([counts[n] for n in names]) / 120
    assert np.abs(frac - [0.5, 0.3, 0.2]).max() < 0.12
    assert set(idx["h36m"]) == {1} and set(idx["coco"]) == {4}  # 4 mod 3 = 1, 4 mod 5 = 4
    cfg.DATASET.TRAIN_3DPW = True
    with pytest.raises(DatasetError, match="3dpw"):
        MixedDataset(cfg, with_dsr_targets=False)


def test_object_array_npz_and_scale_column(tmp_path):
    """Older SPIN/PARE files store strings as object arrays and sometimes scale as (N, 1)."""
    cfg = _cfg(tmp_path)
    data = _write_dataset(cfg.PATHS.DATASET_FOLDERS["synthetic"], str(tmp_path / "synthetic_train.npz"))
    data["imgname"] = np.array(list(data["imgname"]), dtype=object)
    data["scale"] = data["scale"][:, None]
    np.savez(tmp_path / "synthetic_train.npz", **data)
    ds = BaseDataset(cfg, "synthetic", with_dsr_targets=False)
    assert ds.imgname[2] == "images/im2.png" and ds.scale.shape == (3,)


@pytest.mark.parametrize("rot", [0.0, 30.0])
def test_mask_warp_nearest_keeps_every_pixel_a_palette_colour(tmp_path, rot):
    from dsr.data import graphonomy as G

    cfg = _cfg(tmp_path)
    ds = _Fixed(cfg, "synthetic", is_train=True)
    ds.params = (0, np.ones(3), rot, 1.0)
    bilinear = ds[0]["grph"].numpy().transpose(1, 2, 0)
    cfg.DSR.MASK_WARP_NEAREST = True
    ds2 = _Fixed(cfg, "synthetic", is_train=True)
    ds2.params = (0, np.ones(3), rot, 1.0)
    it = ds2[0]
    nearest = it["grph"].numpy().transpose(1, 2, 0)
    _, known_b = G.decode_colour_mask(np.round(bilinear * 255).astype(np.uint8), return_known=True)
    labels_n, known_n = G.decode_colour_mask(np.round(nearest * 255).astype(np.uint8), return_known=True)
    assert known_n.all()  # nearest-neighbour: only palette colours (and black)
    assert not known_b.all()  # bilinear (the original): blended colours along every label edge
    # the 20 x 20 face box becomes 40 x 40 crop pixels (scale x2; a rotation keeps the area)
    assert abs(int((labels_n == 13).sum()) - 1600) <= 80
    assert int((it["grph_dsr_c_label"].numpy() == 1).sum()) == int((labels_n == 13).sum())
