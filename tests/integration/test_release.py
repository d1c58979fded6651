"""Issue 18, item 6: what a release ships — the Apache-2.0 LICENSE, a CHANGELOG naming the version, and a
wheel and sdist that build from the tree and pass `twine check` (both run here, so `make test` runs them)."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_license_is_the_apache_2_0_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    for phrase in ("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
                   "2. Grant of Copyright License.", "9. Accepting Warranty or Additional Liability.",
                   "END OF TERMS AND CONDITIONS"):
        assert phrase in text
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == "Apache-2.0"


def test_changelog_names_this_version() -> None:
    assert f"## {VERSION}" in (ROOT / "CHANGELOG.md").read_text()


def test_wheel_and_sdist_build_and_pass_twine_check(tmp_path: Path) -> None:
    src = tmp_path / "src"   # a copy: building writes egg-info next to the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheel = dist / f"keyturn-{VERSION}-py3-none-any.whl"
    sdist = dist / f"keyturn-{VERSION}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(p.name for p in dist.iterdir())

    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2, checked.stdout

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = email.message_from_bytes(zf.read(f"keyturn-{VERSION}.dist-info/METADATA"))
    assert f"keyturn-{VERSION}.dist-info/licenses/LICENSE" in names
    assert {"keyturn/py.typed", "keyturn/cli/main.py", "keyturn/vault/migrations/env.py"} <= names
    assert any(n.startswith("keyturn/vault/migrations/versions/0001") for n in names)
    # The web console's templates and static files (package data, not modules).
    assert {"keyturn/console/templates/base.html", "keyturn/console/static/console.css",
            "keyturn/console/static/console.js"} <= names
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Description-Content-Type"] == "text/markdown"
    with tarfile.open(sdist) as tf:
        members = set(tf.getnames())
    assert {f"keyturn-{VERSION}/LICENSE", f"keyturn-{VERSION}/README.md", f"keyturn-{VERSION}/pyproject.toml",
            f"keyturn-{VERSION}/src/keyturn/__init__.py"} <= members
