"""Result files of the benchmarks and studies: atomic writes and markdown blocks between markers.

Used by ``benchmarks/`` and ``studies/`` (and ``scripts/gpu_check.py``), which write tables into
``docs/*.md`` pages whose prose around the tables must survive a rerun, and JSON results that a
killed run must never leave half written. Nothing in training imports this module.

* :func:`write_text_atomic` / :func:`write_json_atomic`: write ``path + ".tmp"``, then rename.
* :func:`replace_block`: the text between a ``begin`` and an ``end`` marker line is replaced (the
  markers stay); a text without them gets the block appended; an empty text gets ``title`` first.
"""
from __future__ import annotations

import json
import os

__all__ = ["replace_block", "write_json_atomic", "write_text_atomic"]


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through ``path.tmp`` and a rename (parent folders are created)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json_atomic(path: str, obj, indent: int = 1) -> None:
    """``json.dump(obj)`` to ``path`` atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(obj, indent=indent))


def replace_block(text: str, begin: str, end: str, body: str, title: str = "") -> str:
    """``text`` with ``begin\\n<body>\\n<end>`` in place of its old block between the two markers.

    body: the new content (a trailing newline is dropped). A text without the markers gets the
    block appended after a blank line; an empty (or blank) text becomes ``title`` + the block.
    A marker without its partner, or the end before the begin, is an error (ValueError): the
    file was edited by hand and guessing which part to replace could delete prose.
    """
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if not text.strip():
        text = title
    i, j = text.find(begin), text.find(end)
    if (i < 0) != (j < 0) or (i >= 0 and j < i):
        raise ValueError(f"broken marker pair {begin} ... {end}")
    if i < 0:
        return (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    return text[:i] + block + text[j + len(end):]
