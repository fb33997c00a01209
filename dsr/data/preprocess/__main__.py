"""``python -m dsr.data.preprocess DATASET --root RAW_DIR --out dsr_data [options]``.

Writes ``<out>/dataset_extras/<file>.npz`` (atomically) and prints a closing table per file.
Exit status 2 with one line naming the file on a missing or malformed input.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time

from dsr.data.preprocess import DATASETS
from dsr.data.preprocess.common import PreprocessError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dsr.data.preprocess",
                                     description="Raw dataset download -> SPIN-format npz files.")
    sub = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, module in DATASETS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=(mod.__doc__ or "").strip().splitlines()[0],
                           description=mod.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--root", required=True, help="the dataset's raw download folder")
        p.add_argument("--out", default="dsr_data", help="output tree; npz files go to <out>/dataset_extras/")
        p.add_argument("--workers", type=int, default=1, help="worker processes where a step can use them")
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.time()
    try:
        summaries = args._module.run(args)
    except PreprocessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print()
    for s in summaries:
        print(s.table())
    print(f"done in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
