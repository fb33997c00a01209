"""Constants of the original DSR/SPIN pipeline: joint names and maps, flip permutations,
Graphonomy (CIHP) palette and label merges, image normalisation (reference §2.3, §3.1–§3.3, §5, §6).
"""
from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------- image / camera
FOCAL_LENGTH = 5000.0
IMG_RES = 224
IMG_NORM_MEAN = (0.485, 0.456, 0.406)
IMG_NORM_STD = (0.229, 0.224, 0.225)

# ----------------------------------------------------------------------------- 49 training joints
# 25 OpenPose BODY_25 joints followed by the 24 "GT" joints (reference §2.3).
OP_JOINT_NAMES = [
    "OP Nose", "OP Neck", "OP RShoulder", "OP RElbow", "OP RWrist",
    "OP LShoulder", "OP LElbow", "OP LWrist", "OP MidHip", "OP RHip",
    "OP RKnee", "OP RAnkle", "OP LHip", "OP LKnee", "OP LAnkle",
    "OP REye", "OP LEye", "OP REar", "OP LEar", "OP LBigToe",
    "OP LSmallToe", "OP LHeel", "OP RBigToe", "OP RSmallToe", "OP RHeel",
]
GT_JOINT_NAMES = [
    "Right Ankle", "Right Knee", "Right Hip", "Left Hip", "Left Knee", "Left Ankle",
    "Right Wrist", "Right Elbow", "Right Shoulder", "Left Shoulder", "Left Elbow", "Left Wrist",
    "Neck (LSP)", "Top of Head (LSP)", "Pelvis (MPII)", "Thorax (MPII)", "Spine (H36M)",
    "Jaw (H36M)", "Head (H36M)", "Nose", "Left Eye", "Right Eye", "Left Ear", "Right Ear",
]
JOINT_NAMES = OP_JOINT_NAMES + GT_JOINT_NAMES

# Index of each of the 49 joints in smplx's 45 SMPL joints (24 body + 21 vertex joints)
# extended by the 9 rows of J_regressor_extra (45..53).
JOINT_MAP = {
    "OP Nose": 24, "OP Neck": 12, "OP RShoulder": 17, "OP RElbow": 19, "OP RWrist": 21,
    "OP LShoulder": 16, "OP LElbow": 18, "OP LWrist": 20, "OP MidHip": 0, "OP RHip": 2,
    "OP RKnee": 5, "OP RAnkle": 8, "OP LHip": 1, "OP LKnee": 4, "OP LAnkle": 7,
    "OP REye": 25, "OP LEye": 26, "OP REar": 27, "OP LEar": 28, "OP LBigToe": 29,
    "OP LSmallToe": 30, "OP LHeel": 31, "OP RBigToe": 32, "OP RSmallToe": 33, "OP RHeel": 34,
    "Right Ankle": 8, "Right Knee": 5, "Right Hip": 45, "Left Hip": 46, "Left Knee": 4,
    "Left Ankle": 7, "Right Wrist": 21, "Right Elbow": 19, "Right Shoulder": 17,
    "Left Shoulder": 16, "Left Elbow": 18, "Left Wrist": 20, "Neck (LSP)": 47,
    "Top of Head (LSP)": 48, "Pelvis (MPII)": 49, "Thorax (MPII)": 50, "Spine (H36M)": 51,
    "Jaw (H36M)": 52, "Head (H36M)": 53, "Nose": 24, "Left Eye": 26, "Right Eye": 25,
    "Left Ear": 28, "Right Ear": 27,
}
JOINT_IDS = [JOINT_MAP[n] for n in JOINT_NAMES]  # 49 indices into the 54 extended joints

# Rows of J_regressor_extra.npy (joints 45..53 of the extended set).
EXTRA_JOINT_NAMES = [
    "Right Hip", "Left Hip", "Neck (LSP)", "Top of Head (LSP)", "Pelvis (MPII)",
    "Thorax (MPII)", "Spine (H36M)", "Jaw (H36M)", "Head (H36M)",
]

# SMPL's 24 joints in order, and their parents.
SMPL_JOINT_NAMES = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
]
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]

# ----------------------------------------------------------------------------- H36M regressor joints
# The 17 rows of J_regressor_h36m.npy. Left/right are the person's own, as implied by
# H36M_TO_J14 composed with the 14 LSP joint names (index 6 is compared with "Right Ankle").
H36M_JOINT_NAMES = [
    "Pelvis", "L_Hip", "L_Knee", "L_Ankle", "R_Hip", "R_Knee", "R_Ankle", "Spine", "Thorax",
    "Neck/Nose", "Head", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Shoulder", "R_Elbow", "R_Wrist",
]
H36M_TO_J17 = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9]
H36M_TO_J14 = H36M_TO_J17[:14]
J24_TO_J17 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 14, 16, 17]
J24_TO_J14 = J24_TO_J17[:14]
J14_NAMES = GT_JOINT_NAMES[:12] + ["Neck (LSP)", "Top of Head (LSP)"]

# ----------------------------------------------------------------------------- flip permutations
J24_FLIP_PERM = [5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13, 14, 15, 16, 17, 18, 19, 21, 20, 23, 22]
OP_FLIP_PERM = [0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20, 21]
J49_FLIP_PERM = OP_FLIP_PERM + [25 + i for i in J24_FLIP_PERM]
SMPL_JOINTS_FLIP_PERM = [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22]
SMPL_POSE_FLIP_PERM = [3 * i + k for i in SMPL_JOINTS_FLIP_PERM for k in range(3)]

# ----------------------------------------------------------------------------- Graphonomy / CIHP
GRAPHONOMY_LABELS = [
    "background", "hat", "hair", "glove", "sunglasses", "upperclothes", "dress", "coat",
    "socks", "pants", "jumpsuits", "scarf", "skirt", "face", "leftArm", "rightArm",
    "leftLeg", "rightLeg", "leftShoe", "rightShoe",
]
GRAPHONOMY_PALETTE = np.array(
    [
        [0, 0, 0], [128, 0, 0], [255, 0, 0], [0, 85, 0], [170, 0, 51], [255, 85, 0],
        [0, 0, 85], [0, 119, 221], [85, 85, 0], [0, 85, 85], [85, 51, 0], [52, 86, 128],
        [0, 128, 0], [0, 0, 255], [51, 170, 221], [0, 255, 255], [85, 255, 170],
        [170, 255, 85], [255, 255, 0], [255, 170, 0],
    ],
    dtype=np.uint8,
)  # (20, 3) RGB
# Graphonomy's left/right label pairs (swapped by the FLIP_SWAP_LR_MASKS fix).
GRAPHONOMY_LR_PAIRS = [(14, 15), (16, 17), (18, 19)]
GRAPHONOMY_FLIP_PERM = list(range(20))
for _a, _b in GRAPHONOMY_LR_PAIRS:
    GRAPHONOMY_FLIP_PERM[_a], GRAPHONOMY_FLIP_PERM[_b] = _b, _a

# DSR-MC: minimal-clothing labels, in the order of the 5-element valid vector.
DSR_MC_LABELS = [18, 19, 14, 15, 13]  # leftShoe, rightShoe, leftArm, rightArm, face
DSR_MC_MIN_PIXELS = 60  # a label is valid with more than this many pixels in the crop

# DSR-C: the 8 merged classes and the Graphonomy labels of each.
DSR_C_CLASS_NAMES = ["background", "head", "upperclothes", "pants", "leftArm", "rightArm", "leftLeg", "rightLeg"]
DSR_C_GROUPS = [
    [0],  # background
    [1, 2, 4, 11, 13],  # head: hat, hair, sunglasses, scarf, face
    [3, 5, 6, 7, 10],  # upperclothes: glove, upperclothes, dress, coat, jumpsuits
    [8, 9, 12],  # pants: socks, pants, skirt
    [14],  # leftArm
    [15],  # rightArm
    [16, 18],  # leftLeg: leftLeg, leftShoe
    [17, 19],  # rightLeg: rightLeg, rightShoe
]
DSR_C_MERGE = np.zeros(20, dtype=np.int64)  # Graphonomy label -> merged class
for _k, _group in enumerate(DSR_C_GROUPS):
    DSR_C_MERGE[_group] = _k
DSR_C_MIN_PIXELS = 60  # class-weight threshold (>= for the minimum, > for assignment: §3.2)

# Background removal: keypoints with confidence above this define the box, grown by the margin.
BG_REMOVAL_CONF = 0.3
BG_REMOVAL_MARGIN = 30

# ----------------------------------------------------------------------------- training mixtures
MIXTURE = {
    False: (["h36m", "coco", "mpi-inf-3dhp"], [0.5, 0.3, 0.2]),
    True: (["h36m", "coco", "mpi-inf-3dhp", "3dpw"], [0.3, 0.4, 0.1, 0.2]),
}  # keyed by DATASET.TRAIN_3DPW

EVAL_DATASETS = ["3dpw", "h36m-p1", "h36m-p2", "mpi-inf-3dhp", "synthetic-test", "emdb-1", "emdb-2", "ssp-3d"]

# Mesh colours of the visualisations (RGB 0..255), DATASET.MESH_COLOR.
MESH_COLORS = {
    "blue": (69, 117, 180),
    "light_pink": (244, 194, 194),
    "pink": (197, 27, 125),
    "light_blue": (130, 180, 220),
    "green": (77, 175, 74),
    "white": (230, 230, 230),
}
