"""dsr.parsing API: parser names, build_parser, parse_images' return types, and the weights
loader's errors (each names the file and what is wrong, before any weight is copied)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from dsr.parsing import PARSERS, ParserWeightsError, build_parser, parse_images, parser_layout
from dsr.parsing.weights import read_parser_weights


def test_parser_names():
    assert PARSERS == ("graphonomy", "graphonomy-universal", "schp-lip")
    from dsr.parsing.schp import SCHP_PARSERS

    assert SCHP_PARSERS == ("schp-lip",)


def test_graphonomy_names_match_its_module():
    g = pytest.importorskip("dsr.parsing.graphonomy")
    assert tuple(g.GRAPHONOMY_PARSERS) == PARSERS[:2]


def test_unknown_parser():
    with pytest.raises(ValueError, match="unknown parser 'nope'"):
        build_parser("nope")


def test_build_without_weights_is_in_eval_mode():
    model = build_parser("schp-lip")
    assert isinstance(model, nn.Module) and not model.training


class Constant(nn.Module):
    """Fake network: label 3 everywhere (logit 1 for channel 3, 0 elsewhere)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        out = torch.zeros(x.shape[0], 20, *x.shape[2:])
        out[:, 3] = 1.0
        return out


def test_parse_images_stacks_one_size_and_lists_mixed_sizes():
    same = [np.zeros((30, 20, 3), np.uint8)] * 3
    out = parse_images(Constant(), "schp-lip", same)
    assert isinstance(out, np.ndarray) and out.shape == (3, 30, 20) and out.dtype == np.int64
    assert (out == 3).all()
    mixed = parse_images(Constant(), "schp-lip", [np.zeros((30, 20, 3), np.uint8), np.zeros((11, 17, 3), np.uint8)])
    assert isinstance(mixed, list) and [m.shape for m in mixed] == [(30, 20), (11, 17)]


# ----------------------------------------------------------------------------- weights loader
@pytest.fixture(scope="module")
def schp_layout():
    return parser_layout("schp-lip")


def _random_sd(layout, prefix="module."):
    g = torch.Generator().manual_seed(1)
    return {prefix + k: torch.randn(s, generator=g) for k, s in layout.items()}


def test_missing_file(tmp_path):
    with pytest.raises(ParserWeightsError, match=f"not found: {tmp_path / 'no.pth'}"):
        build_parser("schp-lip", str(tmp_path / "no.pth"))


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "notes.pth"
    p.write_text("these are not weights")
    with pytest.raises(ParserWeightsError, match=f"{p} is not a PyTorch checkpoint"):
        build_parser("schp-lip", str(p))


def test_no_tensors(tmp_path):
    p = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "name": "x"}, p)
    with pytest.raises(ParserWeightsError, match=f"{p} holds no tensors"):
        build_parser("schp-lip", str(p))


def test_unrelated_checkpoint(tmp_path):
    p = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}, p)
    with pytest.raises(ParserWeightsError, match=rf"{p} is not a schp-lip checkpoint: none of its \d+ keys"):
        build_parser("schp-lip", str(p))


def test_missing_unexpected_and_misshaped_keys_in_one_error(tmp_path, schp_layout):
    sd = _random_sd(schp_layout)
    del sd["module.layer2.1.bn2.running_var"]
    sd["module.extra.weight"] = torch.zeros(3)
    sd["module.fushion.3.weight"] = torch.zeros(19, 256, 1, 1)
    p = tmp_path / "bad.pth"
    torch.save({"state_dict": sd}, p)
    with pytest.raises(ParserWeightsError) as e:
        build_parser("schp-lip", str(p))
    msg = str(e.value)
    assert str(p) in msg
    assert "1 missing keys: layer2.1.bn2.running_var" in msg
    assert "1 unexpected keys: extra.weight" in msg
    assert "fushion.3.weight (19, 256, 1, 1) (expected (20, 256, 1, 1))" in msg


def test_weights_of_another_parser_are_named(tmp_path, schp_layout):
    other = {"head.weight": (4, 3), "head.bias": (4,)}
    p = tmp_path / "other.pth"
    torch.save(_random_sd(other, prefix=""), p)
    with pytest.raises(ParserWeightsError, match=f"{p} looks like fake-parser weights, not schp-lip"):
        read_parser_weights(str(p), "schp-lip", schp_layout, {"fake-parser": other})


def test_schp_weights_into_graphonomy_are_named(tmp_path, schp_layout):
    pytest.importorskip("dsr.parsing.graphonomy")
    p = tmp_path / "lip.pth"
    torch.save({"state_dict": _random_sd(schp_layout)}, p)
    with pytest.raises(ParserWeightsError, match=f"{p} looks like schp-lip weights, not graphonomy"):
        build_parser("graphonomy", str(p))


def test_torch04_plain_state_dict_without_num_batches_tracked(tmp_path):
    """Graphonomy's format: a plain state dict from torch 0.4 (legacy, non-zip serialisation,
    BatchNorm layers without num_batches_tracked) loads; the counter keeps its initial value."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    layout = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    sd = {k: torch.randn(s) for k, s in layout.items() if not k.endswith("num_batches_tracked")}
    p = tmp_path / "old.pth"
    torch.save(sd, p, _use_new_zipfile_serialization=False)
    got = read_parser_weights(str(p), "toy", layout)
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    net.load_state_dict(got, strict=False)
    assert torch.equal(net[1].running_var, sd["1.running_var"])


def test_checkpoint_with_num_batches_tracked_loads(tmp_path, schp_layout):
    """A file saved by a later torch carries `*.num_batches_tracked`; our inference-only
    normalisation layers have none: the entries are dropped, every other tensor is kept."""
    sd = _random_sd(schp_layout)
    bn_keys = [k for k in sd if k.endswith(".running_mean")]
    for k in bn_keys:
        sd[k.replace(".running_mean", ".num_batches_tracked")] = torch.tensor(7)
    p = tmp_path / "with_counters.pth"
    torch.save({"state_dict": sd}, p)
    got = read_parser_weights(str(p), "schp-lip", schp_layout)
    assert len(bn_keys) > 0
    assert not any(k.endswith("num_batches_tracked") for k in got)
    assert set(got) == {k[len("module."):] for k in sd if not k.endswith("num_batches_tracked")}
