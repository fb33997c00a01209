"""Overlay renderer and demo (issue: demo and visualisation)."""
from __future__ import annotations

import json
import math
import os

import cv2
import numpy as np
import pytest
import torch

import demo
from conftest import free_body_cfg
from dsr.body import build_body_model
from dsr.geometry import perspective_projection
from dsr.rendering.overlay import render_mesh, side_view_vertices

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FREE = os.path.join(REPO, "dsr", "assets", "free_body")


@pytest.fixture(scope="module")
def body_mesh():
    body = build_body_model(os.path.join(FREE, "smpl"), "neutral")
    eye = torch.eye(3).expand(1, body.num_joints, 3, 3).clone()
    eye[:, 0] = torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])  # upright in the OpenCV camera
    out = body(global_orient=eye[:, :1], body_pose=eye[:, 1:], betas=torch.zeros(1, 10))
    return out.vertices, body.faces


def test_overlay_silhouette_matches_projection(body_mesh):
    verts, faces = body_mesh
    cam_t = torch.tensor([[0.05, 0.1, 2 * 5000 / (224 * 0.9)]])
    img, mask = render_mesh(verts, cam_t, faces, 224, 5000.0, color=(69, 117, 180))
    # independent projection: u = f X/Z + 112 in OpenCV pixel coordinates (pixel centres at +0.5)
    uv = perspective_projection(verts, cam_t, torch.tensor([5000.0]), torch.tensor([[112.0, 112.0]]))[0]
    ys, xs = torch.nonzero(mask[0], as_tuple=True)
    # silhouette box (pixel centres) vs projected vertices' box: within 1 px
    assert abs((xs.min() + 0.5) - uv[:, 0].min()) <= 1.0 and abs((xs.max() + 0.5) - uv[:, 0].max()) <= 1.0
    assert abs((ys.min() + 0.5) - uv[:, 1].min()) <= 1.0 and abs((ys.max() + 0.5) - uv[:, 1].max()) <= 1.0
    # every projected vertex falls on the silhouette (allowing the boundary pixel ring)
    dil = cv2.dilate(mask[0].numpy().astype(np.uint8), np.ones((3, 3), np.uint8))
    px = uv.floor().long().clamp(0, 223)
    assert dil[px[:, 1], px[:, 0]].mean() == 1.0
    # mesh pixels carry the shaded mesh colour, background stays white
    assert torch.all(img[0][~mask[0]] == 1.0)
    mesh_px = img[0][mask[0]]
    assert (mesh_px[:, 2] > mesh_px[:, 0]).all()  # blue-ish mesh colour (69, 117, 180)


def test_side_view_is_the_rotated_mesh(body_mesh):
    verts, faces = body_mesh
    cam_t = torch.tensor([[0.0, 0.0, 50.0]])
    side = side_view_vertices(verts, 270.0)
    # reference rotation written here: 270 deg about y, through the centroid
    a = math.radians(270.0)
    R = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1.0, 0], [-math.sin(a), 0, math.cos(a)]])
    c = verts.mean(dim=1, keepdim=True)
    torch.testing.assert_close(side, (verts - c) @ R.T + c, atol=1e-5, rtol=0)
    _, front_mask = render_mesh(verts, cam_t, faces, 224)
    _, side_mask = render_mesh(side, cam_t, faces, 224)
    inter = (front_mask & side_mask).sum().item()
    union = (front_mask | side_mask).sum().item()
    assert inter / union < 0.7  # not the same image
    # a T-posed body seen from the side is much narrower than from the front
    width = lambda m: (lambda xs: xs.max() - xs.min())(torch.nonzero(m[0], as_tuple=True)[1]).item()
    assert width(side_mask) < 0.5 * width(front_mask)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A SPIN-format checkpoint of a resnet18 HMR on the free body, and the config that names it."""
    from dsr.models import HMR

    d = tmp_path_factory.mktemp("demo")
    cfg = free_body_cfg("resnet18")
    cfg_file = d / "demo.cfg"
    cfg_file.write_text(cfg.dump())
    torch.manual_seed(0)
    model = HMR(cfg)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("body.")}
    flat = {k.split(".", 1)[1]: v for k, v in sd.items()}  # SPIN's flat keys
    ckpt = d / "model.pt"
    torch.save({"model": flat}, ckpt)
    img = np.zeros((300, 200, 3), np.uint8)
    cv2.circle(img, (100, 150), 60, (0, 200, 0), -1)
    img_path = d / "person.jpg"
    cv2.imwrite(str(img_path), img)
    return d, str(ckpt), str(cfg_file), str(img_path)


def test_demo_single_image_and_outputs(checkpoint):
    d, ckpt, cfg_file, img_path = checkpoint
    bbox = d / "box.json"
    bbox.write_text(json.dumps({"bbox": [40, 60, 120, 180]}))
    out = d / "out"
    rc = demo.main(["--checkpoint", ckpt, "--cfg", cfg_file, "--img", img_path, "--bbox", str(bbox),
                    "--outfile_folder", str(out), "--save_obj", "--save_params"])
    assert rc == 0
    res = cv2.imread(str(out / "person_result.png"))
    assert res.shape == (224, 3 * 224, 3)
    params = np.load(out / "person.npz")
    assert params["pose"].shape == (24, 3, 3) and params["betas"].shape == (10,)
    np.testing.assert_allclose(params["center"], [100.0, 150.0])  # x + w/2, y + h/2
    assert params["scale"] == pytest.approx(180 / 200)
    with open(out / "person.obj") as f:
        lines = f.read().splitlines()
    assert sum(ln.startswith("v ") for ln in lines) == 6890 and sum(ln.startswith("f ") for ln in lines) == 13776


def test_box_rules(tmp_path):
    op = os.path.join(tmp_path, "kp.json")
    kps = np.zeros((25, 3))
    kps[:4] = [[10, 20, 0.9], [30, 60, 0.9], [50, 40, 0.5], [500, 500, 0.1]]  # the last is below 0.2
    with open(op, "w") as f:
        json.dump({"people": [{"pose_keypoints_2d": kps.ravel().tolist()}, {"pose_keypoints_2d": []}]}, f)
    center, scale = demo.bbox_from_openpose(op)  # first person, confident keypoints only
    np.testing.assert_allclose(center, [30.0, 40.0])  # mean of (10,20), (30,60), (50,40)
    assert scale == pytest.approx(1.2 * 40 / 200)  # 1.2 x max extent (x: 40, y: 40) / 200
    box = os.path.join(tmp_path, "box.json")
    with open(box, "w") as f:
        json.dump({"bbox": [10, 20, 30, 80]}, f)
    center, scale = demo.bbox_from_json(box)
    np.testing.assert_allclose(center, [25.0, 60.0])
    assert scale == pytest.approx(80 / 200)


def test_demo_without_box_uses_the_integer_centre(tmp_path):
    """No box: the original's centre (W // 2, H // 2) = (320, 213) for a 640 x 427 image (213.5 would
    round to 214 in the crop), scale 640 / 200. The crop maps image row y to crop row
    (y - 213) x 224 / 640 + 112, so a one-pixel white line at row 213 lands exactly on crop row 112."""
    img = np.zeros((427, 640, 3), np.uint8)
    img[213] = 255
    path = str(tmp_path / "wide.png")
    cv2.imwrite(path, img)
    _, crop, center, scale = demo.prepare(path)
    assert center.tolist() == [320, 213] and scale == pytest.approx(3.2)
    assert (crop[112] == 255).all()
    assert (crop[111] == 0).all() and (crop[113] == 0).all()  # rows 210.1 and 215.9 of the image


def test_demo_bad_inputs(checkpoint, tmp_path, capsys):
    d, ckpt, cfg_file, img_path = checkpoint
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(open(img_path, "rb").read()[:40])
    assert demo.main(["--checkpoint", ckpt, "--cfg", cfg_file, "--img", str(broken)]) == 2
    assert f"{broken}: cannot decode the image" in capsys.readouterr().err
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    assert demo.main(["--checkpoint", ckpt, "--cfg", cfg_file, "--img", img_path, "--openpose", str(bad_json)]) == 2
    assert f"{bad_json}: malformed OpenPose json" in capsys.readouterr().err
    # a checkpoint of another architecture (resnet18 weights into a resnet50 model)
    cfg50 = tmp_path / "r50.cfg"
    cfg50.write_text(open(cfg_file).read().replace("BACKBONE: resnet18", "BACKBONE: resnet50"))
    assert demo.main(["--checkpoint", ckpt, "--cfg", str(cfg50), "--img", img_path]) == 2
    assert ckpt in capsys.readouterr().err
    # a folder run reports the failed file and goes on
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), cv2.imread(img_path))
    (folder / "b.jpg").write_bytes(b"\xff\xd8garbage")
    rc = demo.main(["--checkpoint", ckpt, "--cfg", cfg_file, "--img_folder", str(folder),
                    "--outfile_folder", str(tmp_path / "o"), "--detector", "none"])  # the original's mode
    captured = capsys.readouterr()
    assert rc == 0 and os.path.isfile(tmp_path / "o" / "a_result.png")
    assert "1 result(s) written" in captured.out and "b.jpg: cannot decode the image" in captured.err
