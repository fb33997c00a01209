"""Rendering: SoftRas-semantics semantic renderer (two backends), hard rasterization, prior features.

- :class:`SemanticRenderer` / :func:`softras_blend` / :func:`soft_pairs` (semantic_renderer.py)
- :func:`rasterize` hard z-buffer rendering (window or PyTorch3D)
- :func:`semantic_prior_features` (prior.py)
- camera conventions (camera.py): :func:`opencv_to_pytorch3d_cameras`, :func:`project_to_pixels`
"""
from .camera import ndc_per_pixel, opencv_to_pytorch3d_cameras, project_to_pixels
from .pairs import Pairs
from .prior import semantic_prior_features
from .semantic_renderer import (
    BACKENDS,
    Raster,
    SemanticRenderer,
    rasterize,
    resolve_backend,
    soft_pairs,
    softras_blend,
    softras_cutoff,
)

__all__ = [
    "BACKENDS", "Pairs", "Raster", "SemanticRenderer", "ndc_per_pixel", "opencv_to_pytorch3d_cameras",
    "project_to_pixels", "rasterize", "resolve_backend", "semantic_prior_features", "soft_pairs", "softras_blend",
    "softras_cutoff",
]
