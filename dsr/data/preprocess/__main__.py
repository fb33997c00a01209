"""``python -m dsr.data.preprocess DATASET --root RAW_DIR --out dsr_data [options]``.

Writes ``<out>/dataset_extras/<file>.npz`` (atomically) and prints a closing table per file.
Exit status 2 with one line naming the file on a missing or malformed input.
``python -m dsr.data.preprocess DATASET --help`` lists the dataset's own options.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time

from dsr.data.preprocess import DATASETS
from dsr.data.preprocess.common import PreprocessError


def build_parser(dataset: str) -> argparse.ArgumentParser:
    """The option parser of one dataset (common options + the module's ``add_arguments``)."""
    mod = importlib.import_module(DATASETS[dataset])
    p = argparse.ArgumentParser(prog=f"python -m dsr.data.preprocess {dataset}", description=mod.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="the dataset's raw download folder")
    p.add_argument("--out", default="dsr_data", help="output tree; npz files go to <out>/dataset_extras/")
    p.add_argument("--workers", type=int, default=1, help="worker processes where a step can use them")
    mod.add_arguments(p)
    p.set_defaults(_module=mod)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(prog="python -m dsr.data.preprocess",
                                  description="Raw dataset download -> SPIN-format npz files.")
    top.add_argument("dataset", choices=sorted(DATASETS), help="which raw dataset")
    top.add_argument("rest", nargs=argparse.REMAINDER, help="the dataset's options (DATASET --help)")
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    first = top.parse_args(argv[:1])
    args = build_parser(first.dataset).parse_args(argv[1:])
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
