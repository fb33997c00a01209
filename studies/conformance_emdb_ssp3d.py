#!/usr/bin/env python
"""Conformance of our EMDB and SSP-3D protocols with the official code (issue 26).

    python studies/conformance_emdb_ssp3d.py --emdb-code EMDB_CLONE --ssp3d-code SSP3D_CLONE \
        --hierprob-code HIERPROB_CLONE [--work DIR]

EMDB_CLONE = a clone of github.com/eth-ait/emdb, SSP3D_CLONE = of akashsengupta1997/SSP-3D,
HIERPROB_CLONE = of akashsengupta1997/HierarchicalProbabilistic3DHuman. Their files are copied into
``--work`` (default: a new temporary folder, outside the repository) and run there, next to stubs
of what they import and do not need (aitviewer's SMPLLayer / SMPLSequence / local_to_global = smplx
and the kinematic-chain product; tabulate for printing); the embedded free body model stands in for
SMPL (written there as ``SMPL_{NEUTRAL,MALE,FEMALE}.pkl`` for smplx). On fabricated raw trees in
the real formats (tests/emdb_fixtures.py) and the same predictions:

* EMDB: ``EvaluationEngine.compare2method`` + ``compute_metrics`` (prediction through the neutral
  model, as the engine does for HybrIK) vs our converter + :class:`dsr.evaluation.emdb.EmdbProtocol`,
  per good frame: MPJPE, PA-MPJPE, PVE (m), MPJAE, PA-MPJAE (deg), jitter per sequence; twice,
  with predictions unrelated to the ground truth and with GT + noise;
* SSP-3D: ``metrics.compute_pve_neutral_pose_scale_corrected`` per person vs our PVE-T-SC, and
  the author's ``EvalMetricsTracker(['silhouette-IOU'])`` vs our IoU on the same silhouettes;
  for information, the author's crop of the GT silhouettes (``batch_crop_opencv_affine``, their
  (row, col) centres, 1.2 box factor, nearest) at our 224 px against ours (IoU of the two crops).

Prints the largest differences; exit status 1 when one exceeds 1e-6 m / 1e-4 deg (jitter: 1e-6
relative), 2 on a missing clone. Nothing is downloaded. About a minute on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import pickle
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FREE_SMPL = os.path.join(REPO, "dsr", "assets", "free_body", "smpl")
OFFICIAL = {  # option -> files copied into <work>/<folder>
    "emdb_code": ("emdb", ["evaluation_metrics.py", "evaluation_engine.py", "evaluation_loaders.py"]),
    "ssp3d_code": ("ssp3d", ["metrics.py"]),
    "hierprob_code": ("hp", ["metrics/eval_metrics_tracker.py", "utils/eval_utils.py", "utils/image_utils.py"]),
}
STUBS = {
    "tabulate.py": '"""Stub: the engine imports tabulate for printing only."""\n'
                   'def tabulate(rows, headers=()):\n    return "\\n".join(str(r) for r in [headers, *rows])\n',
    "aitviewer/__init__.py": "",
    "aitviewer/configuration.py": (
        "import os\nimport torch\n\n\nclass _C:\n"
        "    smplx_models = os.environ['CONF_SMPLX']\n    device = torch.device('cpu')\n"
        "    f_precision = torch.float32  # aitviewer's default\n\n\nCONFIG = _C()\n"),
    "aitviewer/models/__init__.py": "",
    "aitviewer/models/smpl.py": '''"""Stub of aitviewer's SMPLLayer: smplx.create on the model folder, as aitviewer does."""
import smplx
import torch
from aitviewer.configuration import CONFIG as C


class SMPLLayer(torch.nn.Module):
    def __init__(self, model_type="smpl", gender="neutral", num_betas=10, **kw):
        super().__init__()
        self.num_betas = num_betas
        self.bm = smplx.create(C.smplx_models, model_type=model_type, num_betas=num_betas, gender=gender)
        self.bm.to(device=C.device, dtype=C.f_precision)
        self.model_type = model_type

    def skeletons(self):
        parents = torch.stack([self.bm.parents, torch.arange(0, len(self.bm.parents))])
        return {"all": parents, "body": parents[:, : self.bm.NUM_BODY_JOINTS + 1]}

    def forward(self, poses_body, betas, poses_root=None, trans=None, **kw):
        if betas.shape[0] == 1:
            betas = betas.repeat(poses_body.shape[0], 1)
        out = self.bm(body_pose=poses_body, betas=betas[:, : self.num_betas], global_orient=poses_root, transl=trans)
        return out.vertices, out.joints
''',
    "aitviewer/renderables/__init__.py": "",
    "aitviewer/renderables/smpl.py": '''"""Stub of aitviewer's SMPLSequence: the forward pass of its fk() (joints cut to the skeleton)."""
import numpy as np
import torch
from aitviewer.configuration import CONFIG as C


class SMPLSequence:
    def __init__(self, poses_body, smpl_layer, poses_root=None, betas=None, trans=None, **kw):
        t = lambda x: torch.as_tensor(np.asarray(x), dtype=C.f_precision, device=C.device)  # noqa: E731
        self.smpl_layer = smpl_layer
        self.poses_body, self.poses_root, self.betas, self.trans = t(poses_body), t(poses_root), t(betas), t(trans)
        with torch.no_grad():
            verts, joints = smpl_layer(poses_body=self.poses_body, betas=self.betas, poses_root=self.poses_root,
                                       trans=self.trans)
        skeleton = smpl_layer.skeletons()["body"].T
        self.vertices = verts.cpu().numpy()
        self.joints = joints[:, : skeleton.shape[0]].cpu().numpy()
        self.skeleton = skeleton.cpu().numpy()
''',
    "aitviewer/utils/__init__.py": '''"""Stub of aitviewer.utils.local_to_global: the kinematic-chain product of local rotations."""
import smplx.lbs
import torch


def local_to_global(poses, parents, output_format="aa", input_format="aa"):
    assert output_format == "rotmat" and input_format == "aa"
    n = poses.shape[-1] // 3
    local = smplx.lbs.batch_rodrigues(poses.reshape(-1, 3)).reshape(-1, n, 3, 3)
    glob = torch.zeros_like(local)
    for j in range(n):
        p = int(parents[j])
        glob[:, j] = local[:, j] if p < 0 else glob[:, p] @ local[:, j]
    return glob.reshape(-1, n * 9)
''',
}


def prepare(args, work: str) -> None:
    """Copy the official files, write the stubs and the SMPL pkls of the free body model."""
    import numpy as np

    for opt, (folder, files) in OFFICIAL.items():
        src = getattr(args, opt)
        for f in files:
            path = os.path.join(src, f)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} not found (--{opt.replace('_', '-')} must be a clone of the official code)")
            os.makedirs(os.path.dirname(os.path.join(work, folder, f)), exist_ok=True)
            shutil.copy(path, os.path.join(work, folder, f))
    for d in ("hp/metrics", "hp/utils"):
        open(os.path.join(work, d, "__init__.py"), "a").close()
    for name, text in STUBS.items():
        os.makedirs(os.path.dirname(os.path.join(work, "stubs", name)), exist_ok=True)
        with open(os.path.join(work, "stubs", name), "w") as f:
            f.write(text)
    with open(os.path.join(work, "ssp3d", "config.py"), "w") as f:
        f.write(f"SMPL_MODEL_DIR = {os.path.join(work, 'smplx_models', 'smpl')!r}\n")
    os.makedirs(os.path.join(work, "smplx_models", "smpl"), exist_ok=True)
    for g in ("NEUTRAL", "MALE", "FEMALE"):
        with open(os.path.join(work, "smplx_models", "smpl", f"SMPL_{g}.pkl"), "wb") as f:
            pickle.dump(dict(np.load(os.path.join(FREE_SMPL, f"SMPL_{g}.npz"))), f)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--emdb-code", help="clone of github.com/eth-ait/emdb")
    p.add_argument("--ssp3d-code", help="clone of github.com/akashsengupta1997/SSP-3D")
    p.add_argument("--hierprob-code", help="clone of github.com/akashsengupta1997/HierarchicalProbabilistic3DHuman")
    p.add_argument("--work", default="", help="folder for the official code and stubs (default: a new temp folder)")
    p.add_argument("--_worker", choices=("emdb", "ssp3d"), help=argparse.SUPPRESS)
    p.add_argument("--_near", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import _conformance_workers as w

        return w.run(args._worker, args.work, args._near)
    missing = [o for o in ("emdb_code", "ssp3d_code", "hierprob_code") if not getattr(args, o)]
    if missing:
        print(f"error: give {', '.join('--' + m.replace('_', '-') for m in missing)}", file=sys.stderr)
        return 2
    work = os.path.abspath(args.work or tempfile.mkdtemp(prefix="dsr_conformance_"))
    if work.startswith(REPO + os.sep):
        print(f"error: --work {work} is inside the repository; the official code runs outside it", file=sys.stderr)
        return 2
    try:
        prepare(args, work)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    env = dict(os.environ, CONF_SMPLX=os.path.join(work, "smplx_models"), PYTHONPATH=REPO)
    worst = 0
    for worker, near in (("emdb", False), ("emdb", True), ("ssp3d", False)):
        cmd = [sys.executable, os.path.abspath(__file__), "--work", work, "--_worker", worker] + (["--_near"] if near else [])
        r = subprocess.run(cmd, env=env, cwd=work)
        worst = max(worst, r.returncode)
    print(f"official code and stubs in {work}")
    return worst


if __name__ == "__main__":
    sys.exit(main())
