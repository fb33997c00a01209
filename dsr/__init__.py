"""DSR: Learning to Regress Bodies from Images using Differentiable Semantic Rendering (ICCV 2021),
reimplemented on PyTorch 2.x, Lightning 2.x and PyTorch3D 0.7."""

__version__ = "0.1.0"
