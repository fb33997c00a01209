"""scripts/gpu_bundle.py: manifest, checksum refusal, offline install into a target folder, with
tiny wheels and a .tar.xz fabricated here (the real bundle is not needed)."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile

import pytest
from conftest import load_script  # noqa: E402

gb = load_script("scripts/gpu_bundle.py")


def _wheel(path, module, value, data_purelib=False, extra=None):
    """A minimal wheel: <module>/__init__.py defining VALUE, and a dist-info."""
    with zipfile.ZipFile(path, "w") as z:
        init = f"{module}/__init__.py" if not data_purelib else f"{module}-1.0.data/purelib/{module}/__init__.py"
        z.writestr(init, f"VALUE = {value!r}\n")
        z.writestr(f"{module}-1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
        for name, text in (extra or {}).items():
            z.writestr(name, text)
    return path


def _bundle(tmp_path):
    b = tmp_path / "bundle"
    b.mkdir()
    _wheel(b / "dsrtinya-1.0-py3-none-any.whl", "dsrtinya", 41)
    _wheel(b / "dsrtinyb-1.0-py3-none-any.whl", "dsrtinyb", "from data/purelib", data_purelib=True,
           extra={"dsrtinyb-1.0.data/scripts/tool": "#!/bin/sh\n"})
    # a "compiled package" as the PyTorch3D entry: a tar.xz of a package tree with an executable file
    src = tmp_path / "src"
    (src / "dsrtinyc").mkdir(parents=True)
    (src / "dsrtinyc" / "__init__.py").write_text("VALUE = 'from tar.xz'\n")
    (src / "dsrtinyc" / "_C.so").write_bytes(b"\x7fELF not really")
    os.chmod(src / "dsrtinyc" / "_C.so", 0o755)
    with tarfile.open(b / "dsrtinyc-1.0.tar.xz", "w:xz") as t:
        t.add(src / "dsrtinyc", arcname="dsrtinyc")
    # a distribution whose module the interpreter already has: must not be installed
    _wheel(b / "json_shadow-1.0-py3-none-any.whl", "json", "shadowed")
    entries = [dict(file="dsrtinya-1.0-py3-none-any.whl", module="dsrtinya", requirement="dsrtinya==1.0", kind="wheel"),
               dict(file="dsrtinyb-1.0-py3-none-any.whl", module="dsrtinyb", requirement="dsrtinyb==1.0", kind="wheel"),
               dict(file="dsrtinyc-1.0.tar.xz", module="dsrtinyc", requirement="dsrtinyc==1.0", kind="tarxz"),
               dict(file="json_shadow-1.0-py3-none-any.whl", module="json", requirement="json-shadow==1.0",
                    kind="wheel")]
    gb.write_manifest(str(b), entries)
    return b


def _import_values(target):
    code = "import dsrtinya, dsrtinyb, dsrtinyc, json; print(dsrtinya.VALUE, dsrtinyb.VALUE, dsrtinyc.VALUE, " \
           "hasattr(json, 'VALUE'))"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(target)),
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_manifest_records_sha256_and_size(tmp_path):
    b = _bundle(tmp_path)
    rows = gb.read_manifest(str(b))
    assert [r["file"] for r in rows] == sorted(r["file"] for r in rows)
    for r in rows:
        data = (b / r["file"]).read_bytes()
        import hashlib

        assert r["sha256"] == hashlib.sha256(data).hexdigest() and r["bytes"] == len(data)


def test_install_unpacks_what_is_missing_into_the_target(tmp_path):
    b = _bundle(tmp_path)
    target = tmp_path / "site"
    res = gb.install(str(b), str(target), log=lambda *_: None)
    assert res["installed"] == ["dsrtinya==1.0", "dsrtinyb==1.0", "dsrtinyc==1.0"]
    assert res["present"] == ["json-shadow==1.0"]  # the stdlib's json is importable: left alone
    assert not (target / "json").exists()
    # wheel, wheel with .data/purelib (scripts dropped), tar.xz; the stdlib json is not shadowed
    assert _import_values(target) == "41 from data/purelib from tar.xz False"
    assert not (target / "dsrtinyb-1.0.data").exists()
    assert os.stat(target / "dsrtinyc" / "_C.so").st_mode & 0o100  # the executable bit survives
    # a second install with the same manifest does nothing (stamp)
    again = gb.install(str(b), str(target), log=lambda *_: None)
    assert again["skipped_stamp"] and again["installed"] == res["installed"]


def test_altered_or_missing_file_is_refused_naming_it(tmp_path):
    b = _bundle(tmp_path)
    whl = b / "dsrtinya-1.0-py3-none-any.whl"
    data = bytearray(whl.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte changed
    whl.write_bytes(bytes(data))
    (b / "dsrtinyc-1.0.tar.xz").unlink()
    with pytest.raises(gb.BundleError) as e:
        gb.install(str(b), str(tmp_path / "site"), log=lambda *_: None)
    msg = str(e.value)
    assert "dsrtinya-1.0-py3-none-any.whl: sha256" in msg and "dsrtinyc-1.0.tar.xz: missing" in msg
    assert "2 of 4 files" in msg and "gpu_bundle.sh" in msg
    assert not (tmp_path / "site").exists()  # nothing unpacked from a bad bundle
    # the command line says the same in one line of error and exits 1
    proc = subprocess.run([sys.executable, gb.__file__, "install", str(b), str(tmp_path / "site")], capture_output=True,
                          text=True)
    assert proc.returncode == 1 and "dsrtinya-1.0-py3-none-any.whl: sha256" in proc.stderr


def test_no_or_malformed_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(gb.BundleError, match="no manifest; build the bundle"):
        gb.verify(str(tmp_path))
    (tmp_path / gb.MANIFEST).write_text(gb.MANIFEST_HEADER + "\nonly\ttwo\n")
    with pytest.raises(gb.BundleError, match="line 2: expected 6 tab-separated fields"):
        gb.verify(str(tmp_path))


def test_archive_member_leaving_the_target_is_refused(tmp_path):
    b = tmp_path / "bundle"
    b.mkdir()
    _wheel(b / "evil-1.0-py3-none-any.whl", "dsrtinyevil", 1, extra={"../escaped.py": "x = 1\n"})
    gb.write_manifest(str(b), [dict(file="evil-1.0-py3-none-any.whl", module="dsrtinyevil",
                                    requirement="evil==1.0", kind="wheel")])
    with pytest.raises(gb.BundleError, match="outside the target folder"):
        gb.install(str(b), str(tmp_path / "site"), log=lambda *_: None)
    assert not (tmp_path / "escaped.py").exists()


def test_wheel_to_tarxz_is_deterministic_and_complete(tmp_path):
    whl = _wheel(tmp_path / "pkg-1.0-py3-none-any.whl", "dsrtinyd", 7, extra={"dsrtinyd/sub/x.txt": "hello"})
    a, b = tmp_path / "a.tar.xz", tmp_path / "b.tar.xz"
    gb.wheel_to_tarxz(str(whl), str(a))
    gb.wheel_to_tarxz(str(whl), str(b))
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(whl) as z, tarfile.open(a, "r:xz") as t:
        assert sorted(z.namelist()) == t.getnames()
        for name in z.namelist():
            assert t.extractfile(name).read() == z.read(name)


def test_pinned_list_is_consistent():
    reqs = [r for r, *_ in gb.PACKAGES]
    assert all("==" in r for r in reqs) and len({r.split("==")[0].lower() for r in reqs}) == len(reqs)
    need = {m for _, m, role, _ in gb.PACKAGES if role == "need"}
    assert need == {"smplx", "yacs", "loguru", "roma", "iopath", "pytorch3d", "zlib_ng"}
    assert [how for r, _, _, how in gb.PACKAGES if r.startswith("easypytorch3d")] == ["tarxz"]
