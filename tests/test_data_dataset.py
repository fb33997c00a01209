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
    # background removal: keypoints span crop x in [31, 192], y in [17, 202] -> columns [1, 222)
    assert (c[:, :1] == 0).all() and (c[:, 222:] == 0).all()
    # the distance transform is 0 on the MC mask and grows off it
    d = it["grph_dsr_mc_dist_mat"].numpy()
    assert d[40, 60] == 0 and d[40, 90] == pytest.approx(90 - 79, abs=1.01)


def test_background_removal_in_dataset(tmp_path):
    cfg = _cfg(tmp_path)
    ds = _Fixed(cfg, "synthetic", is_train=True)
    # only two confident keypoints: crop pixels trunc(2 x 20.3) + 1 = 41 and 81; back in float32
    # 41 -> 40.999996 and 81 -> 81.0, so the original keeps [int(10.999996), int(111.0)) = [10, 111)
    kp = np.zeros((3, 49, 3))
    kp[:, 25, :] = [20.3, 20.3, 1.0]
    kp[:, 26, :] = [40.3, 40.3, 0.9]
    kp[:, 27, :] = [105.0, 105.0, 0.2]  # low confidence, ignored
    ds.keypoints = kp
    c = ds[0]["grph_dsr_c_label"].numpy()
    assert (c[24:56, 44:76] == 1).all()  # face inside the box
    assert (c[111:, :] == 0).all() and (c[:, 111:] == 0).all()  # arm and the rest removed
    assert (c[84:111, 64:111] == 2).all()  # upperclothes partly kept, up to column / row 110
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


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo hacked > /dev/null",))


def test_object_array_npz_runs_no_code(tmp_path):
    """An object member that would run code when unpickled is refused with the file named (the
    object arrays go through dsr.safe_pickle's restricted unpickler, not numpy's pickle)."""
    cfg = _cfg(tmp_path)
    data = _write_dataset(cfg.PATHS.DATASET_FOLDERS["synthetic"], str(tmp_path / "synthetic_train.npz"))
    data["imgname"] = np.array([_RunsCode()] * len(data["imgname"]), dtype=object)
    np.savez(tmp_path / "synthetic_train.npz", **data)
    with pytest.raises(DatasetError, match=r"synthetic_train\.npz\[imgname\]: refusing"):
        BaseDataset(cfg, "synthetic", with_dsr_targets=False)


@pytest.mark.parametrize("rot", [0.0, 30.0])
def test_mask_warp_nearest_keeps_every_boundary_pixel(tmp_path, rot):
    cfg = _cfg(tmp_path)
    ds = _Fixed(cfg, "synthetic", is_train=True)
    ds.params = (0, np.ones(3), rot, 1.0)
    head_b = int((ds[0]["grph_dsr_c_label"].numpy() == 1).sum())
    cfg.DSR.MASK_WARP_NEAREST = True
    ds2 = _Fixed(cfg, "synthetic", is_train=True)
    ds2.params = (0, np.ones(3), rot, 1.0)
    head_n = int((ds2[0]["grph_dsr_c_label"].numpy() == 1).sum())
    # the 20 x 20 face box becomes 40 x 40 crop pixels (scale x2; a rotation keeps the area)
    if rot == 0:
        assert head_n == 40 * 40
        # bilinear (the original): crop column u samples mask column u / 2, so the outer crop rows and
        # columns blend face and black (0, 0, 127.5): not a palette colour, background; 39 x 39 remain
        assert head_b == 39 * 39
    else:
        assert abs(head_n - 1600) <= 80 and head_b < head_n


def test_mask_blend_truncated_to_background_as_the_original(tmp_path):
    """The original warps the colour mask as float32 (the image's processing), then x / 255 * 255
    -> uint8 truncates. At a hair (255, 0, 0) / background edge the x2 crop samples mask column
    19.5: (127.5, 0, 0) -> (127, 0, 0), not a palette colour -> background. (A uint8 warp rounds it
    to (128, 0, 0) = hat, which the DSR-C merge counts as head.)"""
    cfg = _cfg(tmp_path)
    root = cfg.PATHS.DATASET_FOLDERS["synthetic"]
    m = np.zeros((112, 112, 3), np.uint8)
    m[10:30, 20:40] = (255, 0, 0)  # hair
    cv2.imwrite(os.path.join(root, "grph_sequences", "images", "im0.png"), m[:, :, ::-1])
    it = _Fixed(cfg, "synthetic", is_train=True)[0]
    c = it["grph_dsr_c_label"].numpy()
    # mask rows 10..29, cols 20..39 -> exact samples at crop rows 20..58, cols 40..78
    assert (c[20:59, 40:79] == 1).all() and int((c == 1).sum()) == 39 * 39
    assert c[40, 39] == 0 and c[40, 79] == 0 and c[19, 60] == 0 and c[59, 60] == 0
    # class weights count exact colours only: head 1521 px, background 224^2 - 1521 - 4 x 39 - 4
    # blended pixels (the blends count for no class); m = 1521 -> head 1, background 1521 / count
    bg = 224 * 224 - 1521 - 4 * 39 - 4
    np.testing.assert_allclose(it["dsr_c_class_weight"].numpy(), [1521 / bg, 1, 0, 0, 0, 0, 0, 0], rtol=1e-6)


def test_items_without_smpl_get_zero_pose_and_betas(tmp_path):
    """The original: has_smpl = 0 -> pose = zeros(72), betas = zeros(10), then the augmentation's
    rotation and flip applied to that pose."""
    cfg = _cfg(tmp_path, extra={"has_smpl": np.array([1.0, 0.0, 1.0])})
    data = np.load(tmp_path / "synthetic_train.npz")
    ds = _Fixed(cfg, "synthetic", is_train=True, with_dsr_targets=False)
    it = ds[1]
    assert float(it["has_smpl"]) == 0
    assert (it["pose"].numpy() == 0).all() and (it["betas"].numpy() == 0).all()
    np.testing.assert_allclose(ds[0]["betas"].numpy(), data["shape"][0], rtol=1e-6)  # has_smpl = 1: stored
    # rotation 30 degrees and a flip: root = Rz(-30 deg) as axis-angle (0, 0, -pi/6); the flip negates
    # its y and z components -> (0, 0, pi/6); every other joint stays 0
    ds.params = (1, np.ones(3), 30.0, 1.0)
    pose = ds[1]["pose"].numpy()
    np.testing.assert_allclose(pose[:3], [0, 0, np.pi / 6], atol=1e-6)
    assert (pose[3:] == 0).all() and (ds[1]["betas"].numpy() == 0).all()


def test_per_row_has_pose_3d(tmp_path):
    """An npz's optional has_pose_3d (N,) flags 3D supervision per row (one file mixing 3D-supervised
    and 2D-only people); without it every row of a file with S has 3D (SPIN's rule); IGNORE_3D
    zeroes it."""
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    n = 3
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"{i}.jpg"), np.full((64, 64, 3), 100, np.uint8))
    d = {"imgname": np.array([f"images/{i}.jpg" for i in range(n)]), "center": np.full((n, 2), 32.0),
         "scale": np.full(n, 0.3), "S": np.zeros((n, 24, 4)), "part": np.zeros((n, 24, 3))}
    np.savez(tmp_path / "with.npz", **d, has_pose_3d=np.array([1.0, 0.0, 1.0]))
    np.savez(tmp_path / "without.npz", **d)
    cfg = get_cfg_defaults()
    cfg.METHOD = "spin"
    cfg.PATHS.DATASET_NPZ_PATH = str(tmp_path)
    cfg.PATHS.DATASET_FOLDERS["synthetic"] = str(root)
    cfg.PATHS.TRAIN_FILES["synthetic"] = "with.npz"
    assert [float(BaseDataset(cfg, "synthetic")[i]["has_pose_3d"]) for i in range(n)] == [1.0, 0.0, 1.0]
    cfg.PATHS.TRAIN_FILES["synthetic"] = "without.npz"
    assert [float(BaseDataset(cfg, "synthetic")[i]["has_pose_3d"]) for i in range(n)] == [1.0, 1.0, 1.0]
    cfg.DATASET.IGNORE_3D = True
    cfg.PATHS.TRAIN_FILES["synthetic"] = "with.npz"
    assert [float(BaseDataset(cfg, "synthetic")[i]["has_pose_3d"]) for i in range(n)] == [0.0, 0.0, 0.0]


def test_min_pixels_scale_with_res_by_hand():
    """DSR.MIN_PIXELS_SCALE_WITH_RES: the original's 60 pixels at 224 px, 60 * (res / 224)^2 at res;
    off: 60 at any res. A 64-px label map with a 10-pixel arm: valid only with the scaled threshold."""
    from dsr.data import graphonomy as G

    assert G.min_pixels(60, 224, True) == 60 and G.min_pixels(60, 64, False) == 60
    assert G.min_pixels(60, 64, True) == pytest.approx(60 * 64 * 64 / 224 / 224)  # 4.90
    labels = np.zeros((64, 64), np.int64)
    labels[0, :10] = 14  # leftArm, 10 pixels
    labels[5:20, 5:20] = 5  # upper clothes, 225 pixels
    labels[30, :3] = 9  # pants, 3 pixels
    _, valid = G.dsr_mc_target(labels)
    assert valid.sum() == 0
    mask, valid = G.dsr_mc_target(labels, G.min_pixels(60, 64, True))
    assert valid.tolist() == [0, 0, 1, 0, 0] and mask.sum() == 10
    merged = G.merge_dsr_c_labels(labels)
    w_orig = G.dsr_c_class_weights(merged)
    w_scaled = G.dsr_c_class_weights(merged, min_px=G.min_pixels(60, 64, True))
    c_arm, c_upper, c_pants = (int(G.DSR_C_MERGE[k]) for k in (14, 5, 9))
    # unscaled: only upper clothes (225 > 60) counts, its weight 225 / 225; scaled: the arm (10) and
    # upper clothes count, pants (3 < 4.9) does not; m = 10 -> weights 10/10 and 10/225
    assert w_orig[c_upper] == 1 and w_orig[c_arm] == 0
    assert w_scaled[c_arm] == pytest.approx(1.0) and w_scaled[c_upper] == pytest.approx(10 / 225)
    assert w_scaled[c_pants] == 0
