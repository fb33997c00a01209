"""A documented sampler of human-looking SMPL body poses for the synthetic dataset.

Joint frames: SMPL rotations are relative to the parent, with axes aligned with the rest pose
(a T-pose: x = the person's left, y = up, z = forward). Every body joint gets intrinsic x-y-z Euler
angles (degrees) drawn inside anatomical limits written for the LEFT side and mirrored for the
right (SMPL mirror symmetry: right = left with the y and z angles negated):

  joint      x (flex/extend)        y (twist/swing)       z (abduct/raise)
  hip        -110 (leg fwd)..30     -35..35               -15..45 (outward)
  knee       0..145 (bend back)     -3..3                 -3..3
  ankle      -30..35                -12..12               -12..12
  foot       -15..15                0                     0
  spine1     -20..40 (bend fwd)     -25..25               -15..15
  spine2/3   -10..20                -15..15               -10..10
  neck       -30..35                -35..35               -15..15
  head       -25..30                -40..40               -15..15
  collar     -10..10                -15..10               -10..20
  shoulder   -45..45 (twist)        -100 (fwd)..35 (back) -85 (down)..75 (up)
  elbow      -10..10                -145 (bend fwd)..0    -10..10
  wrist      -35..35                -25..25               -35..35
  hand       -10..10                -10..10               -10..10

Poses come from five activity modes (probabilities in ``MODES``): 'stand' (arms hanging,
legs straight), 'walk' (opposite hip swing, bent knees, counter-swinging arms), 'reach' (one or
both arms raised/forward), 'crouch' (both hips flexed 60-110 deg, knees 60-140 deg) and 'free'
(every joint uniform within its limits, legs limited to moderate flexion). Every mode draws
around its mean with noise and is clipped to the limits above.

Self-crossing check (``limbs_collide``): the limbs and the torso are capsules (segments between
skeleton joints with radii in metres); a pose is rejected when two non-adjacent capsules
overlap (arm through torso, leg through leg, arm through arm, hand in the head), tested on points
sampled along the segments. ``sample_poses`` redraws rejected poses (up to ``max_tries``).

Global orientation (``sample_global_orient``): upright in the OpenCV camera (a 180 deg turn
about x), a yaw uniform in [-180, 180) deg (with probability 0.5 within +-60 deg of facing the
camera), and small pitch/roll (N(0, 8 deg), clipped at 20 deg).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from dsr.constants import SMPL_JOINT_NAMES, SMPL_JOINTS_FLIP_PERM

__all__ = ["JOINT_LIMITS", "MODES", "MODES_B", "sample_mode", "sample_body_pose", "sample_poses", "sample_global_orient",
           "limbs_collide", "clip_to_limits"]

_J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}

# left-side (and central) limits in degrees: joint -> ((xmin, xmax), (ymin, ymax), (zmin, zmax))
_LEFT_LIMITS = {
    "left_hip": ((-110, 30), (-35, 35), (-15, 45)),
    "left_knee": ((0, 145), (-3, 3), (-3, 3)),
    "left_ankle": ((-30, 35), (-12, 12), (-12, 12)),
    "left_foot": ((-15, 15), (0, 0), (0, 0)),
    "spine1": ((-20, 40), (-25, 25), (-15, 15)),
    "spine2": ((-10, 20), (-15, 15), (-10, 10)),
    "spine3": ((-10, 20), (-15, 15), (-10, 10)),
    "neck": ((-30, 35), (-35, 35), (-15, 15)),
    "head": ((-25, 30), (-40, 40), (-15, 15)),
    "left_collar": ((-10, 10), (-15, 10), (-10, 20)),
    "left_shoulder": ((-45, 45), (-100, 35), (-85, 75)),
    "left_elbow": ((-10, 10), (-145, 0), (-10, 10)),
    "left_wrist": ((-35, 35), (-25, 25), (-35, 35)),
    "left_hand": ((-10, 10), (-10, 10), (-10, 10)),
}


def _build_limits() -> np.ndarray:
    lim = np.zeros((24, 3, 2))
    for name, rng3 in _LEFT_LIMITS.items():
        j = _J[name]
        lim[j] = np.asarray(rng3, dtype=np.float64)
        jr = SMPL_JOINTS_FLIP_PERM[j]
        if jr != j:  # mirror: negate y and z ranges
            lim[jr, 0] = lim[j, 0]
            lim[jr, 1] = -lim[j, 1][::-1]
            lim[jr, 2] = -lim[j, 2][::-1]
    return lim


JOINT_LIMITS = _build_limits()  # (24, 3, 2) degrees; row 0 (pelvis/global) unused
MODES = {"stand": 0.25, "walk": 0.25, "reach": 0.12, "crouch": 0.08, "free": 0.30}
# the second domain of the synthetic generator (SynthSettings(domain='b')): no standing poses,
# reaching and crouching three times as often
MODES_B = {"stand": 0.0, "walk": 0.15, "reach": 0.35, "crouch": 0.25, "free": 0.25}


def _mirror(euler_left: np.ndarray) -> np.ndarray:
    return euler_left * np.array([1.0, -1.0, -1.0])


def clip_to_limits(euler: np.ndarray) -> np.ndarray:
    """(..., 24, 3) degrees clipped to JOINT_LIMITS."""
    return np.clip(euler, JOINT_LIMITS[:, :, 0], JOINT_LIMITS[:, :, 1])


def _mode_mean(mode: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mean (24, 3) degrees and noise std (24, 3) of one draw of an activity mode."""
    mean = np.zeros((24, 3))
    std = np.full((24, 3), 6.0)
    std[[_J["left_foot"], _J["right_foot"], _J["left_hand"], _J["right_hand"]]] = 4.0
    L, R = _J, _J

    def both(name_left, e_left, e_right=None):
        mean[L[name_left]] = e_left
        mean[SMPL_JOINTS_FLIP_PERM[L[name_left]]] = _mirror(np.asarray(e_left if e_right is None else e_right, float))

    if mode == "stand":
        both("left_shoulder", [0, rng.uniform(-15, 10), rng.uniform(-80, -55)])
        both("left_elbow", [0, rng.uniform(-40, 0), 0])
        both("left_hip", [rng.uniform(-10, 5), 0, rng.uniform(0, 10)])
        both("left_knee", [rng.uniform(0, 15), 0, 0])
    elif mode == "walk":
        a = rng.uniform(10, 35)
        mean[L["left_hip"]] = [-a, 0, 3]
        mean[R["right_hip"]] = _mirror(np.array([a * 0.6, 0, 3]))
        mean[L["left_knee"]] = [rng.uniform(5, 30), 0, 0]
        mean[R["right_knee"]] = [rng.uniform(20, 60), 0, 0]
        s = rng.uniform(10, 30)
        mean[L["left_shoulder"]] = [0, s, -70]
        mean[R["right_shoulder"]] = _mirror(np.array([0, -s, -70]))
        both("left_elbow", [0, rng.uniform(-50, -10), 0])
        if rng.uniform() < 0.5:  # mirror the gait phase
            e = mean.copy()
            mean = _mirror(e[SMPL_JOINTS_FLIP_PERM])
    elif mode == "reach":
        up = [rng.uniform(-30, 30), rng.uniform(-90, 0), rng.uniform(-10, 70)]
        down = [0, rng.uniform(-20, 10), rng.uniform(-80, -50)]
        both("left_shoulder", up, up if rng.uniform() < 0.4 else down)
        both("left_elbow", [0, rng.uniform(-100, 0), 0], [0, rng.uniform(-60, 0), 0])
        both("left_hip", [rng.uniform(-20, 5), 0, rng.uniform(0, 15)])
        if rng.uniform() < 0.5:
            mean = _mirror(mean[SMPL_JOINTS_FLIP_PERM])
    elif mode == "crouch":
        h = rng.uniform(60, 105)
        k = rng.uniform(60, 135)
        both("left_hip", [-h, rng.uniform(-10, 10), rng.uniform(5, 25)])
        both("left_knee", [k, 0, 0])
        mean[L["spine1"]] = [rng.uniform(0, 30), 0, 0]
        both("left_shoulder", [0, rng.uniform(-70, 0), rng.uniform(-70, -20)])
        both("left_elbow", [0, rng.uniform(-110, -20), 0])
    elif mode == "free":
        u = rng.uniform(JOINT_LIMITS[:, :, 0], JOINT_LIMITS[:, :, 1])
        u[[L["left_hip"], R["right_hip"]], 0] = rng.uniform(-70, 20, size=2)
        u[[L["left_knee"], R["right_knee"]], 0] = rng.uniform(0, 90, size=2)
        u[[L["left_shoulder"], R["right_shoulder"]], 0] *= 0.5
        mean = u
        std[:] = 2.0
    else:
        raise ValueError(f"unknown pose mode {mode!r}")
    # a little of everywhere else
    for name in ("spine1", "spine2", "spine3", "neck", "head"):
        std[_J[name]] = 5.0
    return mean, std


def sample_mode(rng: np.random.Generator, modes: dict | None = None) -> str:
    """One activity mode drawn with the probabilities of ``modes`` (default ``MODES``)."""
    modes = MODES if modes is None else modes
    names = list(modes)
    p = np.asarray([modes[n] for n in names], dtype=np.float64)
    return names[rng.choice(len(names), p=p / p.sum())]


def sample_body_pose(rng: np.random.Generator, mode: str | None = None, modes: dict | None = None) -> np.ndarray:
    """One (72,) axis-angle SMPL pose (joint 0 = zeros; set the global orientation separately).
    ``mode`` fixes the activity mode, else it is drawn from ``modes`` (default ``MODES``)."""
    if mode is None:
        mode = sample_mode(rng, modes)
    mean, std = _mode_mean(mode, rng)
    euler = clip_to_limits(mean + rng.standard_normal((24, 3)) * std)
    euler[0] = 0.0
    aa = Rotation.from_euler("XYZ", euler.reshape(-1, 3), degrees=True).as_rotvec()
    aa[0] = 0.0
    return aa.reshape(72)


# capsules: (name, joint a, joint b, radius m); adjacency = sharing a joint
_CAPSULES = [
    ("torso_low", "pelvis", "spine2", 0.10), ("torso_up", "spine2", "neck", 0.10),
    ("head", "neck", "head", 0.09),
    ("l_uarm", "left_shoulder", "left_elbow", 0.045), ("l_farm", "left_elbow", "left_wrist", 0.035),
    ("l_hand", "left_wrist", "left_hand", 0.03),
    ("r_uarm", "right_shoulder", "right_elbow", 0.045), ("r_farm", "right_elbow", "right_wrist", 0.035),
    ("r_hand", "right_wrist", "right_hand", 0.03),
    ("l_thigh", "left_hip", "left_knee", 0.065), ("l_shin", "left_knee", "left_ankle", 0.045),
    ("l_foot", "left_ankle", "left_foot", 0.035),
    ("r_thigh", "right_hip", "right_knee", 0.065), ("r_shin", "right_knee", "right_ankle", 0.045),
    ("r_foot", "right_ankle", "right_foot", 0.035),
]
# pairs that may touch (adjacent along the body, or anatomically overlapping at rest)
_ALLOWED = {
    frozenset(p) for p in [
        ("torso_low", "torso_up"), ("torso_up", "head"), ("torso_low", "l_thigh"), ("torso_low", "r_thigh"),
        ("l_thigh", "r_thigh"), ("torso_up", "l_uarm"), ("torso_up", "r_uarm"),
        ("l_uarm", "l_farm"), ("l_farm", "l_hand"), ("r_uarm", "r_farm"), ("r_farm", "r_hand"),
        ("l_thigh", "l_shin"), ("l_shin", "l_foot"), ("r_thigh", "r_shin"), ("r_shin", "r_foot"),
        ("head", "l_uarm"), ("head", "r_uarm"),
    ]
}
_PAIRS = [(i, j) for i in range(len(_CAPSULES)) for j in range(i + 1, len(_CAPSULES))
          if frozenset((_CAPSULES[i][0], _CAPSULES[j][0])) not in _ALLOWED]


def limbs_collide(joints: np.ndarray, n_samples: int = 8, slack: float = 0.8) -> np.ndarray:
    """Cheap self-crossing test on skeleton joints.

    Args:
        joints: (B, 24, 3) SMPL skeleton joints (metres).
        slack: capsules overlap when the distance between their axes is below
            slack * (r_a + r_b).
    Returns:
        (B,) bool, True where two non-adjacent capsules overlap.
    """
    joints = np.asarray(joints, dtype=np.float64)
    t = np.linspace(0.0, 1.0, n_samples)
    a = joints[:, [_J[c[1]] for c in _CAPSULES]]  # (B, C, 3)
    b = joints[:, [_J[c[2]] for c in _CAPSULES]]
    pts = a[:, :, None] + (b - a)[:, :, None] * t[None, None, :, None]  # (B, C, S, 3)
    rad = np.array([c[3] for c in _CAPSULES])
    ii = np.array([p[0] for p in _PAIRS])
    jj = np.array([p[1] for p in _PAIRS])
    d = np.linalg.norm(pts[:, ii, :, None] - pts[:, jj, None, :], axis=-1).min(axis=(-1, -2))  # (B, P)
    return (d < slack * (rad[ii] + rad[jj])[None]).any(axis=1)


def sample_poses(rng: np.random.Generator, n: int, skeleton_fn=None, max_tries: int = 50,
                 modes: dict | None = None) -> np.ndarray:
    """(n, 72) body poses (root zero), modes drawn from ``modes`` (default ``MODES``).
    ``skeleton_fn((m, 72) poses) -> (m, 24, 3)`` joints, used for the self-crossing rejection
    (skipped when None)."""
    poses = np.stack([sample_body_pose(rng, modes=modes) for _ in range(n)])
    if skeleton_fn is None:
        return poses
    todo = np.arange(n)
    for _ in range(max_tries):
        bad = limbs_collide(skeleton_fn(poses[todo]))
        todo = todo[bad]
        if len(todo) == 0:
            break
        poses[todo] = np.stack([sample_body_pose(rng, modes=modes) for _ in range(len(todo))])
    else:  # give up on the last few: use a standing pose for them
        poses[todo] = np.stack([sample_body_pose(rng, "stand") for _ in range(len(todo))])
    return poses


def sample_global_orient(rng: np.random.Generator, n: int, tilt_std: float = 8.0, tilt_max: float = 20.0) -> np.ndarray:
    """(n, 3) axis-angle root orientations in the OpenCV camera frame (see module docstring);
    pitch and roll are N(0, tilt_std) degrees clipped at +-tilt_max."""
    yaw = np.where(rng.uniform(size=n) < 0.5, rng.uniform(-60, 60, n), rng.uniform(-180, 180, n))
    pitch = np.clip(rng.normal(0, tilt_std, n), -tilt_max, tilt_max)
    roll = np.clip(rng.normal(0, tilt_std, n), -tilt_max, tilt_max)
    upright = Rotation.from_euler("x", 180, degrees=True)
    body = Rotation.from_euler("ZXY", np.stack([roll, pitch, yaw], 1), degrees=True)
    return (upright * body).as_rotvec()
