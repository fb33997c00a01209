#!/usr/bin/env python
"""Write docs/config.md: every config key of dsr/config.py with its default and its comment.

    python tools/make_config_doc.py            # rewrite docs/config.md
    python tools/make_config_doc.py --check    # exit 1 when docs/config.md is not current

The keys and defaults come from ``get_cfg_defaults()``; each key's meaning is the ``# comment`` at
the end of its line in ``dsr/config.py`` (the SPIN / DSR loss blocks share the lines of
``_hmr_loss_block``). A key without a comment is an error: every key is documented at its source.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dsr.config import get_cfg_defaults  # noqa: E402

DOC = os.path.join(REPO, "docs", "config.md")
SOURCE = os.path.join(REPO, "dsr", "config.py")
HEAD = """# Configuration keys

```bash
python train.py --cfg configs/dsr_train.cfg --print-config        # the resolved config of a file
python train.py --cfg FILE --opts KEY VALUE [KEY VALUE ...]        # override keys on the command line
python tools/make_config_doc.py                                    # regenerate this page
```

A config file overrides the defaults below (YAML, nested by the dots of the key). A list with more
than one element is a grid-search axis: the combinations are the Cartesian product of the axes in
file order (last axis fastest) and `--cfg_id N` runs the N-th. Unknown keys, values of the wrong
type and a missing file are reported in one line (exit status 2). `--opts` takes the same checks.

Keys marked **added** do not exist in the original DSR; every other key has the original's default
(reference §1.5). The departures from the original that a key switches are listed in
[fidelity.md](fidelity.md). This page is generated from the comments of `dsr/config.py` by
`tools/make_config_doc.py`; `tests/test_docs.py` fails when it is out of date.
"""


def _comments(source: str) -> dict:
    """{key path or loss-block name: comment} from the '# ...' ends of the assignment lines."""
    out = {}
    pat = re.compile(r'^\s*(_C\.[\w.\[\]"\'-]+|node\.\w+)\s*=.*?#\s*(.+)$')
    for line in source.splitlines():
        m = pat.match(line)
        if not m:
            continue
        target = m.group(1)
        target = re.sub(r'\[["\']([^"\']+)["\']\]', r".\1", target)
        key = target[3:] if target.startswith("_C.") else "*." + target[5:]
        out[key] = m.group(2).strip()
    return out


def _flat(node, prefix=""):
    for k, v in node.items():
        key = f"{prefix}{k}"
        if hasattr(v, "items"):
            yield from _flat(v, key + ".")
        else:
            yield key, v


def render() -> str:
    comments = _comments(open(SOURCE).read())
    groups: dict[str, list] = {}
    missing = []
    for key, value in _flat(get_cfg_defaults()):
        top = key.split(".")[0] if "." in key else "general"
        note = comments.get(key)
        if note is None and top in ("SPIN", "DSR"):  # the shared lines of _hmr_loss_block
            note = comments.get("*." + key.split(".")[-1])
        if note is None:  # PATHS.DATASET_FOLDERS / TRAIN_FILES / TEST_FILES entries share their block's comment
            parent = key.rsplit(".", 1)[0]
            note = {"PATHS.DATASET_FOLDERS": "root folder of the dataset's images (and grph_sequences/ masks)",
                    "PATHS.TRAIN_FILES": "npz file of the training set (inside DATASET_NPZ_PATH)",
                    "PATHS.TEST_FILES": "npz file of the evaluation set (inside DATASET_NPZ_PATH)",
                    "PATHS.BACKBONE_WEIGHTS": "local initial weights of the backbone ('' = random init)"}.get(parent)
        if note is None:
            missing.append(key)
            continue
        added = note.startswith("added") or top in ("PATHS", "TRAINER")
        note = re.sub(r"^added:?\s*", "", note)
        groups.setdefault(top, []).append((key, value, note, added))
    if missing:
        raise SystemExit(f"{SOURCE}: keys without a comment: {', '.join(missing)}")
    order = ["general", "DATASET", "OPTIMIZER", "TRAINING", "TESTING", "TRAINER", "SPIN", "DSR", "PATHS"]
    text = [HEAD]
    for top in sorted(groups, key=lambda g: order.index(g) if g in order else len(order)):
        text.append(f"\n## {top}\n\n| key | default | meaning |\n|---|---|---|")
        for key, value, note, added in groups[top]:
            val = repr(value) if isinstance(value, str) else str(value)
            note = note.replace("|", "\\|")
            text.append(f"| `{key}` | `{val}` | {'**added** ' if added else ''}{note} |")
    return "\n".join(text) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the page differs from the generated text")
    a = ap.parse_args(argv)
    text = render()
    if a.check:
        current = open(DOC).read() if os.path.isfile(DOC) else ""
        if current != text:
            print(f"{DOC} is out of date: run python tools/make_config_doc.py", file=sys.stderr)
            return 1
        return 0
    with open(DOC + ".tmp", "w") as f:
        f.write(text)
    os.replace(DOC + ".tmp", DOC)
    print(f"written {os.path.relpath(DOC, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
