#!/usr/bin/env python
"""The offline bundle of the Python packages a CUDA machine lacks: build it here, install it there.

    python scripts/gpu_bundle.py build   [BUNDLE]           # here (needs pip and the package registry)
    python scripts/gpu_bundle.py verify  [BUNDLE]           # checksums only
    python scripts/gpu_bundle.py install [BUNDLE] TARGET    # there: no network, stdlib only

BUNDLE defaults to ``gpu_bundle/`` (ignored by git). ``scripts/gpu_bundle.sh`` and
``scripts/gpu_check.sh`` call this file.

The target is CPython 3.12 on manylinux x86_64 (the lent GPU machine: torch 2.11.0+cu130,
torchvision, Lightning, timm, scipy, OpenCV, TensorBoard already installed). ``PACKAGES`` pins what
the project needs on top of that, each with the module it provides:
  * ``need``: not on the GPU image (smplx, yacs, loguru, roma, iopath, PyTorch3D, zlib-ng);
  * ``fallback``: dependencies of those and the test runner, on the GPU image as far as its
    package list says (installed there only if the machine's Python cannot import them).
Every distribution is installed only where the interpreter running ``install`` cannot already import
its module, so a complete environment (e.g. the project's ``.venv``) is left alone.

Files: pure-Python wheels as downloaded (``iopath`` 0.1.10 exists only as an sdist: it is built
into a wheel here and checked to be pure), and the ``easypytorch3d`` cp312 wheel's contents as a
``.tar.xz`` (the wheel is ~70 MB, the tarball about half). ``MANIFEST.tsv`` lists each file with its
sha256, size, module, requirement and kind; ``install`` refuses a bundle whose files do not match
it, naming each bad file. ``install`` unpacks into TARGET (put it on PYTHONPATH); it writes
TARGET/.installed (the manifest's hash) and does nothing the next time for the same manifest.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BUNDLE = os.path.join(REPO, "gpu_bundle")
MANIFEST = "MANIFEST.tsv"
MANIFEST_HEADER = "# file\tsha256\tbytes\tmodule\trequirement\tkind"
STAMP = ".installed"
TARGET_TAGS = dict(python_version="3.12", implementation="cp", abi="cp312",
                   platforms=("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                              "manylinux2014_x86_64", "manylinux1_x86_64"))
SIZE_LIMIT_MIB = 60  # bundle + tracked files; the device tool carries at most 64 MiB

# (requirement, module, role, how): how = 'wheel' (download), 'build' (sdist -> pure wheel),
# 'tarxz' (download the wheel, keep its contents as .tar.xz)
PACKAGES = (
    ("smplx==0.1.28", "smplx", "need", "wheel"),
    ("yacs==0.1.8", "yacs", "need", "wheel"),
    ("loguru==0.7.3", "loguru", "need", "wheel"),
    ("roma==1.8.0", "roma", "need", "wheel"),
    ("iopath==0.1.10", "iopath", "need", "build"),  # PyTorch3D's dependency; sdist only
    ("easypytorch3d==0.7.9.post1", "pytorch3d", "need", "tarxz"),  # compiled against torch 2.11
    ("zlib-ng==1.1.0", "zlib_ng", "need", "wheel"),  # the loader's mask inflate (else the slower zlib)
    # dependencies of the above (iopath: portalocker, tqdm, typing_extensions; yacs: PyYAML) and
    # pytest with its own, all listed on the GPU image: only installed where missing
    ("portalocker==4.4.2", "portalocker", "fallback", "wheel"),
    ("tqdm==4.70.1", "tqdm", "fallback", "wheel"),
    ("typing_extensions==4.16.0", "typing_extensions", "fallback", "wheel"),
    ("PyYAML==6.0.4", "yaml", "fallback", "wheel"),
    ("pytest==9.2.0", "pytest", "fallback", "wheel"),
    ("pluggy==1.7.0", "pluggy", "fallback", "wheel"),
    ("iniconfig==2.3.1", "iniconfig", "fallback", "wheel"),
    ("packaging==26.4", "packaging", "fallback", "wheel"),
    ("Pygments==2.21.0", "pygments", "fallback", "wheel"),
)


class BundleError(RuntimeError):
    """A bundle that cannot be used: missing or altered file, bad manifest, unsafe archive member."""


# ----------------------------------------------------------------------------- manifest
def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(bundle: str, entries: list) -> str:
    """entries: dicts with file, module, requirement, kind (file relative to ``bundle``); the sha256
    and size are computed here. Written atomically; returns its path."""
    lines = [MANIFEST_HEADER]
    for e in sorted(entries, key=lambda e: e["file"]):
        path = os.path.join(bundle, e["file"])
        lines.append("\t".join((e["file"], sha256_file(path), str(os.path.getsize(path)), e["module"],
                                e["requirement"], e["kind"])))
    out = os.path.join(bundle, MANIFEST)
    with open(out + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(out + ".tmp", out)
    return out


def read_manifest(bundle: str) -> list:
    """-> [dict(file, sha256, bytes, module, requirement, kind)]; a clear error when absent or malformed."""
    path = os.path.join(bundle, MANIFEST)
    if not os.path.isfile(path):
        raise BundleError(f"{path}: no manifest; build the bundle with `bash scripts/gpu_bundle.sh`")
    keys = ("file", "sha256", "bytes", "module", "requirement", "kind")
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(keys) or parts[5] not in ("wheel", "tarxz"):
                raise BundleError(f"{path}, line {n}: expected {len(keys)} tab-separated fields "
                                  f"({', '.join(keys)}; kind wheel|tarxz), got {line.rstrip()!r}")
            e = dict(zip(keys, parts))
            e["bytes"] = int(e["bytes"])
            if os.path.isabs(e["file"]) or ".." in e["file"].split("/"):
                raise BundleError(f"{path}, line {n}: file name {e['file']!r} leaves the bundle")
            out.append(e)
    if not out:
        raise BundleError(f"{path}: the manifest lists no file")
    return out


def verify(bundle: str) -> list:
    """Check every manifest file's size and sha256; raise one BundleError listing every bad file."""
    entries = read_manifest(bundle)
    bad = []
    for e in entries:
        path = os.path.join(bundle, e["file"])
        if not os.path.isfile(path):
            bad.append(f"{e['file']}: missing")
        elif os.path.getsize(path) != e["bytes"]:
            bad.append(f"{e['file']}: {os.path.getsize(path)} bytes, the manifest says {e['bytes']}")
        else:
            got = sha256_file(path)
            if got != e["sha256"]:
                bad.append(f"{e['file']}: sha256 {got}, the manifest says {e['sha256']}")
    if bad:
        raise BundleError(f"bundle {bundle} does not match its manifest ({len(bad)} of {len(entries)} files):\n  "
                          + "\n  ".join(bad) + "\nrebuild it with `bash scripts/gpu_bundle.sh` and carry it again")
    return entries


# ----------------------------------------------------------------------------- install (there)
def _safe_member(name: str, archive: str) -> str:
    norm = os.path.normpath(name)
    if os.path.isabs(name) or norm == ".." or norm.startswith(".." + os.sep):
        raise BundleError(f"{archive}: member {name!r} would be written outside the target folder")
    return norm


def _extract_wheel(path: str, target: str) -> int:
    """Unpack a wheel (a zip) into ``target``; ``*.data/purelib|platlib`` go to the top level."""
    n = 0
    with zipfile.ZipFile(path) as z:
        members = [(info, _safe_member(info.filename, path)) for info in z.infolist() if not info.is_dir()]
        for info, name in members:
            parts = name.split(os.sep)
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue  # scripts / headers / data: nothing the project imports
                name = os.path.join(*parts[2:])
            dest = os.path.join(target, name)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(dest, mode | 0o644)
            n += 1
    return n


def _extract_tarxz(path: str, target: str) -> int:
    n = 0
    with tarfile.open(path, "r:xz") as t:
        members = []
        for m in t.getmembers():
            _safe_member(m.name, path)
            if not (m.isfile() or m.isdir()):
                raise BundleError(f"{path}: member {m.name!r} is neither a file nor a folder")
            members.append(m)
            n += m.isfile()
        if hasattr(tarfile, "data_filter"):
            t.extractall(target, members=members, filter="data")
        else:  # Python without extraction filters: the members were checked above
            t.extractall(target, members=members)
    return n


def importable_elsewhere(module: str, target: str) -> bool:
    """Whether this interpreter imports ``module`` without ``target`` on its path."""
    tgt = os.path.realpath(target)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != tgt]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
    finally:
        sys.path[:] = saved


def install(bundle: str, target: str, log=print) -> dict:
    """Verify the bundle, then unpack every distribution whose module this interpreter lacks into
    ``target``. Returns {'installed': [...], 'present': [...], 'skipped_stamp': bool}."""
    entries = verify(bundle)
    digest = sha256_file(os.path.join(bundle, MANIFEST))
    stamp = os.path.join(target, STAMP)
    if os.path.isfile(stamp):
        with open(stamp) as f:
            old = json.load(f)
        if old.get("manifest_sha256") == digest:
            log(f"[bundle] {target} already holds this bundle ({len(old['installed'])} installed)")
            return dict(installed=old["installed"], present=old["present"], skipped_stamp=True)
    os.makedirs(target, exist_ok=True)
    installed, present = [], []
    for e in entries:
        if importable_elsewhere(e["module"], target):
            present.append(e["requirement"])
            continue
        path = os.path.join(bundle, e["file"])
        n = _extract_wheel(path, target) if e["kind"] == "wheel" else _extract_tarxz(path, target)
        installed.append(e["requirement"])
        log(f"[bundle] installed {e['requirement']} ({n} files) -> {target}")
    if present:
        log(f"[bundle] already importable here, not installed: {', '.join(present)}")
    with open(stamp + ".tmp", "w") as f:
        json.dump(dict(manifest_sha256=digest, installed=installed, present=present), f)
    os.replace(stamp + ".tmp", stamp)
    return dict(installed=installed, present=present, skipped_stamp=False)


# ----------------------------------------------------------------------------- build (here)
def wheel_to_tarxz(wheel: str, out: str) -> None:
    """Rewrite a wheel's members as a deterministic .tar.xz (sorted, mtime 0, root-owned, xz -9)."""
    with zipfile.ZipFile(wheel) as z, open(out + ".tmp", "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w:xz", preset=9) as t:
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                if info.is_dir():
                    continue
                name = _safe_member(info.filename, wheel)
                ti = tarfile.TarInfo(name)
                ti.size = info.file_size
                ti.mode = ((info.external_attr >> 16) & 0o777) or 0o644
                ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "", ""
                with z.open(info) as src:
                    t.addfile(ti, src)
    os.replace(out + ".tmp", out)


def _pip(args: list, cwd: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        lines = [ln for ln in proc.stdout.splitlines() if "is ignored: it is neither" not in ln]
        raise BundleError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n" + "\n".join(lines[-15:]))


def _fetch(req: str, how: str, tmp: str) -> str:
    """Download (or build) ``req`` into the empty folder ``tmp``; returns the wheel's path."""
    if how == "build":
        _pip(["wheel", "-q", "--no-deps", "--no-binary", ":all:", "-w", tmp, req], tmp)
    else:
        plat = [a for p in TARGET_TAGS["platforms"] for a in ("--platform", p)]
        _pip(["download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
              TARGET_TAGS["python_version"], "--implementation", TARGET_TAGS["implementation"], "--abi",
              TARGET_TAGS["abi"], "--abi", "abi3", "--abi", "none", *plat, "-d", tmp, req], tmp)
    wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
    if len(wheels) != 1:
        raise BundleError(f"{req}: expected one wheel from pip, got {sorted(os.listdir(tmp))}")
    if how == "build" and not wheels[0].endswith("-py3-none-any.whl"):
        raise BundleError(f"{req}: the wheel built here is not pure Python ({wheels[0]}); it would not run there")
    return os.path.join(tmp, wheels[0])


def tracked_bytes(repo: str = REPO) -> int:
    """Size of the files git tracks (what travels besides the bundle)."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=repo, stdout=subprocess.PIPE, check=True).stdout
    return sum(os.path.getsize(os.path.join(repo, p)) for p in out.decode().split("\0")
               if p and os.path.isfile(os.path.join(repo, p)))


def build(bundle: str, log=print) -> list:
    """Fill ``bundle`` with PACKAGES; files that the manifest lists and that verify are kept."""
    os.makedirs(bundle, exist_ok=True)
    have = {}
    try:
        for e in verify(bundle):
            have[e["requirement"]] = e
    except BundleError as err:
        if os.path.isfile(os.path.join(bundle, MANIFEST)):
            log(f"[bundle] rebuilding what does not verify:\n{err}")
        try:  # keep the files that do verify
            for e in read_manifest(bundle):
                p = os.path.join(bundle, e["file"])
                if os.path.isfile(p) and sha256_file(p) == e["sha256"]:
                    have[e["requirement"]] = e
        except BundleError:
            pass
    entries = []
    for req, module, _role, how in PACKAGES:
        kind = "tarxz" if how == "tarxz" else "wheel"
        if req in have and have[req]["module"] == module and have[req]["kind"] == kind:
            entries.append(have[req])
            continue
        log(f"[bundle] fetching {req}" + (" (and recompressing it as .tar.xz: a few minutes)" if how == "tarxz" else ""))
        with tempfile.TemporaryDirectory() as tmp:
            whl = _fetch(req, how, tmp)
            if kind == "wheel":
                name = os.path.basename(whl)
                shutil.copy(whl, os.path.join(bundle, name + ".tmp"))
                os.replace(os.path.join(bundle, name + ".tmp"), os.path.join(bundle, name))
            else:
                name = os.path.basename(whl)[:-len(".whl")] + ".tar.xz"
                wheel_to_tarxz(whl, os.path.join(bundle, name))
        entries.append(dict(file=name, module=module, requirement=req, kind=kind))
    listed = {e["file"] for e in entries}
    for f in os.listdir(bundle):  # files of an older pin list
        if f not in listed and f != MANIFEST and os.path.isfile(os.path.join(bundle, f)):
            log(f"[bundle] removing {f} (not in the pinned list)")
            os.remove(os.path.join(bundle, f))
    write_manifest(bundle, entries)
    return verify(bundle)


def report_sizes(bundle: str, log=print) -> float:
    """Print each file's size, the bundle, the tracked files and the total (MiB); returns the total."""
    entries = read_manifest(bundle)
    mib = 2**20
    for e in sorted(entries, key=lambda e: -e["bytes"]):
        log(f"  {e['bytes'] / mib:8.2f} MiB  {e['file']}")
    others = [f for f in os.listdir(bundle) if f not in {e["file"] for e in entries}]
    b = sum(os.path.getsize(os.path.join(bundle, f)) for f in os.listdir(bundle)
            if os.path.isfile(os.path.join(bundle, f)))
    if any(os.path.isdir(os.path.join(bundle, f)) for f in others):
        log(f"[bundle] warning: {bundle} holds folders ({', '.join(others)}); they would travel too")
    t = tracked_bytes()
    total = (b + t) / mib
    log(f"[bundle] bundle {b / mib:.2f} MiB + tracked files {t / mib:.2f} MiB = {total:.2f} MiB "
        f"(limit {SIZE_LIMIT_MIB} MiB)")
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("build", "verify"):
        p = sub.add_parser(name)
        p.add_argument("bundle", nargs="?", default=DEFAULT_BUNDLE)
    p = sub.add_parser("install")
    p.add_argument("bundle")
    p.add_argument("target")
    p.add_argument("--json", default=None, help="write what was installed / already there to this file")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            build(args.bundle)
            total = report_sizes(args.bundle)
            if total > SIZE_LIMIT_MIB:
                print(f"[bundle] error: {total:.1f} MiB with the tracked files is over {SIZE_LIMIT_MIB} MiB",
                      file=sys.stderr)
                return 1
        elif args.cmd == "verify":
            n = len(verify(args.bundle))
            print(f"[bundle] {args.bundle}: {n} files match the manifest")
        else:
            res = install(args.bundle, args.target)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(res, f)
    except BundleError as e:
        print(f"[bundle] error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
