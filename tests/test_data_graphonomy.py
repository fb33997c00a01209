"""Graphonomy decode / merge / class weights / MC target / background box, by hand."""
import numpy as np
import pytest

from dsr.data import graphonomy as G

# palette colours written out by hand from reference §3.1
FACE = (0, 0, 255)
LEFT_ARM = (51, 170, 221)
RIGHT_ARM = (0, 255, 255)
LEFT_SHOE = (255, 255, 0)
RIGHT_SHOE = (255, 170, 0)
PANTS = (0, 85, 85)
UPPER = (255, 85, 0)
HAIR = (255, 0, 0)
LEFT_LEG = (85, 255, 170)


def _paint(h, w, regions):
    img = np.zeros((h, w, 3), np.uint8)
    for (y0, y1, x0, x1), col in regions:
        img[y0:y1, x0:x1] = col
    return img


def test_decode_exact_colours_and_unknown():
    img = _paint(4, 5, [((0, 1, 0, 1), FACE), ((0, 1, 1, 2), LEFT_ARM), ((1, 2, 0, 1), RIGHT_SHOE),
                        ((1, 2, 1, 2), (0, 0, 254)),  # one off from face -> unknown
                        ((2, 3, 0, 5), PANTS), ((3, 4, 4, 5), (52, 86, 128))])  # scarf
    labels, known = G.decode_colour_mask(img, return_known=True)
    assert labels.dtype == np.int64 and labels.shape == (4, 5)
    assert labels[0, 0] == 13 and labels[0, 1] == 14 and labels[1, 0] == 19
    assert labels[1, 1] == 0 and not known[1, 1]
    assert (labels[2] == 9).all() and labels[3, 4] == 11
    assert labels[3, 0] == 0 and known[3, 0]  # black = background, a known colour
    # every palette entry decodes to its own index
    pal = np.array([[0, 0, 0], [128, 0, 0], [255, 0, 0], [0, 85, 0], [170, 0, 51], [255, 85, 0], [0, 0, 85],
                    [0, 119, 221], [85, 85, 0], [0, 85, 85], [85, 51, 0], [52, 86, 128], [0, 128, 0],
                    [0, 0, 255], [51, 170, 221], [0, 255, 255], [85, 255, 170], [170, 255, 85],
                    [255, 255, 0], [255, 170, 0]], np.uint8)
    assert (G.decode_colour_mask(pal[None]) == np.arange(20)[None]).all()
    assert (G.encode_labels(np.arange(20)[None]) == pal[None]).all()


def test_merge_groups():
    labels = np.arange(20)[None]
    want = [0, 1, 1, 2, 1, 2, 2, 2, 3, 3, 2, 1, 3, 1, 4, 5, 6, 7, 6, 7]
    assert G.merge_dsr_c_labels(labels).tolist() == [want]


def test_class_weights_by_hand():
    # 20x20 = 400 px: head 100, upperclothes 61, pants 60, leftArm 59, rest background 120
    merged = np.zeros(400, np.int64)
    merged[:100] = 1
    merged[100:161] = 2
    merged[161:221] = 3
    merged[221:280] = 4
    merged = merged.reshape(20, 20)
    w = G.dsr_c_class_weights(merged)
    # min over counts >= 60: 60 (pants); weight only for counts > 60
    expect = np.array([60 / 120, 60 / 100, 60 / 61, 0.0, 0.0, 0, 0, 0], np.float32)
    np.testing.assert_allclose(w, expect, rtol=1e-6)
    assert w.dtype == np.float32 and w.shape == (8,)
    # counting only known pixels: drop 30 background pixels -> background count 90
    counted = np.ones((20, 20), bool)
    counted.ravel()[280:310] = False
    w2 = G.dsr_c_class_weights(merged, counted)
    assert w2[0] == pytest.approx(60 / 90)


def test_mc_target_by_hand():
    # leftShoe 61 px (valid), rightShoe 60 px (not valid), face 100 (valid), no arms
    img = np.zeros((30, 30, 3), np.uint8)
    img.reshape(-1, 3)[:61] = LEFT_SHOE
    img.reshape(-1, 3)[100:160] = RIGHT_SHOE
    img.reshape(-1, 3)[200:300] = FACE
    img.reshape(-1, 3)[400:500] = HAIR
    labels = G.decode_colour_mask(img)
    mask, valid = G.dsr_mc_target(labels)
    assert valid.tolist() == [1, 0, 0, 0, 1]
    assert mask.dtype == np.float32 and mask.sum() == 161
    flat = mask.ravel()
    assert flat[:61].all() and not flat[100:160].any() and flat[200:300].all() and not flat[400:500].any()


def test_distance_transform():
    mask = np.zeros((5, 7), np.float32)
    mask[2, 3] = 1
    d = G.mc_distance_transform(mask)
    yy, xx = np.mgrid[:5, :7]
    np.testing.assert_allclose(d, np.sqrt((yy - 2) ** 2 + (xx - 3) ** 2), rtol=1e-6)


def _norm(px, res=224):
    """Crop pixel -> the item's float32 normalised keypoint, as j2d_processing stores it."""
    return np.float32(2.0 * px / res - 1.0)


def _kp(points, res=224):
    """[(x px, y px, conf)] -> (N, 3) float32 normalised keypoints."""
    return np.array([[_norm(x, res), _norm(y, res), c] for x, y, c in points], dtype=np.float32)


def test_keypoint_box_by_hand():
    """The original's rule: p = 0.5 * 224 * (k + 1) in float32, conf > 0.3 (float32), x0 =
    int(max(min p - 30, 0)), x1 = int(min(max p + 30, 224)), kept [x0, x1) (exclusive end)."""
    # integer and half-integer pixels: 40.5 and 150.5 come back exact in float32; 41 comes back as
    # 40.999996 (so the top edge is int(10.999996) = 10, not 11); 100 exact
    assert np.float32(112) * (_norm(41.0) + np.float32(1)) == np.float32(40.999996)
    kp = _kp([(40.5, 41.0, 1.0), (150.5, 100.0, 0.31), (5.0, 5.0, np.float32(0.3)),  # conf 0.3: excluded
              (210.0, 100.0, 0.0)])
    assert G.keypoint_box(kp, 224) == (10, 10, 180, 130)  # x: int(10.5), int(180.5); y: int(10.999996), 130
    # clipping at 0 and at the crop side (224, the exclusive end); 36 -> 36.000004 -> int(6.000004) = 6;
    # 64 -> 63.999996 -> int(93.999996) = 93 (float32 arithmetic for +30 would round to 94.0)
    kp2 = _kp([(36.0, 10.0, 0.9), (64.0, 210.0, 0.9)])
    assert G.keypoint_box(kp2, 224) == (6, 0, 93, 224)
    labels = np.ones((224, 224), np.int64)
    out = G.remove_background(labels, kp)
    assert out[10:130, 10:180].all() and out.sum() == 120 * 170
    assert out[10:130, 179].all() and not out[:, 180].any() and not out[:, 9].any() and not out[130].any()
    # every confident keypoint 45.5 px left of the crop: x1 = int(-15.5) = -15, and the original's
    # img[:, -15:] = 0 zeroes only the last 15 columns (a negative index), so columns 0..208 stay
    kp3 = _kp([(-45.5, 50.0, 1.0), (-45.5, 60.0, 1.0)])
    assert G.keypoint_box(kp3, 224) == (0, 20, -15, 90)
    out3 = G.remove_background(labels, kp3)
    assert out3[20:90, :209].all() and out3.sum() == 70 * 209
    with pytest.raises(G.NoConfidentKeypointsError, match="confidence"):
        G.keypoint_box(_kp([(1.0, 1.0, np.float32(0.3))]), 224)
    with pytest.raises(ValueError, match="square"):
        G.remove_background(np.ones((10, 12)), kp)


def test_swap_lr_labels():
    labels = np.arange(20)
    sw = G.swap_lr_labels(labels)
    assert sw[14] == 15 and sw[15] == 14 and sw[16] == 17 and sw[17] == 16 and sw[18] == 19 and sw[19] == 18
    assert (sw[:14] == np.arange(14)).all()


def test_mask_path():
    assert G.mask_path("/r", "images/gpj_x.jpg") == "/r/grph_sequences/images/gpj_x.png"


def test_bad_input():
    with pytest.raises(ValueError, match="RGB"):
        G.decode_colour_mask(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="0..19"):
        G.merge_dsr_c_labels(np.array([[20]]))


def test_dsr_targets_equals_the_three_functions():
    """The loader's one-pass dsr_targets gives dsr_mc_target, merge_dsr_c_labels and
    dsr_c_class_weights(counted=known) exactly, values and dtypes, on random label maps
    (empty, background-heavy, uniform; every known share; thresholds below and above the counts)."""
    rng = np.random.default_rng(0)
    for k in range(120):
        lab = np.zeros((224, 224), np.uint8)
        y0, x0 = rng.integers(0, 100, 2)
        y1, x1 = y0 + rng.integers(1, 124), x0 + rng.integers(1, 124)
        p = None if k % 3 else np.r_[[0.5], np.full(19, 0.5 / 19)]
        lab[y0:y1, x0:x1] = rng.choice(20, size=(y1 - y0, x1 - x0), p=p)
        if k % 7 == 0:
            lab[:] = 0
        known = rng.random((224, 224)) > (0.0, 0.1, 0.9)[k % 3]
        mc_px, c_px = float(rng.choice([0, 60, 200, 5000])), float(rng.choice([0, 60, 200, 5000]))
        mask, valid = G.dsr_mc_target(lab, mc_px)
        merged = G.merge_dsr_c_labels(lab)
        weights = G.dsr_c_class_weights(merged, counted=known, min_px=c_px)
        got = G.dsr_targets(lab, known, mc_px, c_px)
        for want, have in zip((mask, valid, merged, weights), got):
            assert have.dtype == want.dtype and np.array_equal(have, want), k


def test_dsr_targets_refuses_bad_labels():
    with pytest.raises(ValueError, match="uint8"):
        G.dsr_targets(np.zeros((4, 4), np.int64), np.ones((4, 4), bool))
    bad = np.zeros((4, 4), np.uint8)
    bad[0, 0] = 20
    with pytest.raises(ValueError, match="0..19"):
        G.dsr_targets(bad, np.ones((4, 4), bool))


def test_palette_index_matches_a_search_in_both_channel_orders_and_any_layout():
    """palette_index (the loader's BGRA-as-uint32 table lookup) against a per-pixel search among
    the 20 palette colours, on palette colours, one-off colours and random ones, RGB and BGR,
    through views cv2 cannot take as they are (reversed rows / columns / channels, strided rows)."""
    rng = np.random.default_rng(3)
    pal = G.GRAPHONOMY_PALETTE.astype(np.uint8)
    rgb = pal[rng.integers(0, 20, (37, 53))]
    off = rng.random((37, 53)) < 0.2  # one channel one off: not a palette colour
    ch = rng.integers(0, 3, (37, 53))
    rgb[off, ch[off]] ^= 1
    rnd = rng.random((37, 53)) < 0.1
    rgb[rnd] = rng.integers(0, 256, (int(rnd.sum()), 3))

    def search(img_rgb):
        eq = (img_rgb[:, :, None, :] == pal[None, None]).all(-1)  # (H, W, 20)
        return np.where(eq.any(-1), eq.argmax(-1), 255).astype(np.uint8)

    want = search(rgb)
    assert (want == 255).any() and (want < 20).any()
    for view in (rgb, rgb[::-1], rgb[:, ::-1], rgb[::2, 1::3], np.asfortranarray(rgb)):
        got = G.palette_index(view)
        assert got.dtype == np.uint8 and got.shape == view.shape[:2]
        assert (got == search(view)).all()
        assert (G.palette_index(np.ascontiguousarray(view[:, :, ::-1]), bgr=True) == got).all()
        assert (G.palette_index(view[:, :, ::-1], bgr=True) == got).all()
    labels, known = G.decode_colour_labels(rgb)
    assert (known == (want != 255)).all() and (labels == np.where(want == 255, 0, want)).all()
    assert G.palette_index(np.zeros((0, 4, 3), np.uint8)).shape == (0, 4)
    with pytest.raises(ValueError, match="uint8"):
        G.palette_index(rgb.astype(np.int32))
