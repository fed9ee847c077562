"""The release artefacts: `python -m build` makes a wheel and an sdist that install and run.

Each is installed into a clean virtualenv of its own (made with uv, which comes with the
pinned Meltano), then `tap-kapwork --about` runs from there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from e2e_helpers import MELTANO, ROOT

UV = MELTANO.parent / "uv"
# One worker builds once: `python -m build` writes the repository's egg-info, which two
# builds at once (pytest-xdist workers) would both write.
pytestmark = pytest.mark.xdist_group("package")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    outdir = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(outdir), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = outdir.glob("tap_kapwork-*.whl")
    (sdist,) = outdir.glob("tap_kapwork-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def _version(artefact: Path) -> str:
    return artefact.name.removesuffix(".tar.gz").split("-")[1]


def test_the_wheel_holds_the_packages_and_the_licence_but_no_tests(dist):
    names = zipfile.ZipFile(dist["wheel"]).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {
        "tap_kapwork",
        "kapwork_sandbox",
        f"tap_kapwork-{_version(dist['wheel'])}.dist-info",
    }
    assert "tap_kapwork/tap.py" in names
    assert any(name.endswith("licenses/LICENSE") for name in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(dist["wheel"]).read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text
    assert "Project-URL: Repository, " in text
    assert "Classifier: Programming Language :: Python :: 3.10" in text


def test_the_sdist_holds_what_a_build_needs(dist):
    with tarfile.open(dist["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "PKG-INFO"):
        assert needed in names, needed
    assert "tap_kapwork/tap.py" in names
    assert "kapwork_sandbox/server.py" in names


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_it_installs_into_a_clean_venv_and_runs_about(dist, kind, tmp_path):
    if not UV.exists():
        pytest.fail(f"{UV} is missing: run `make test`, which installs Meltano (and uv with it).")
    venv = tmp_path / "venv"
    for args in (
        ["venv", "--quiet", "--python", sys.executable, str(venv)],
        ["pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(dist[kind])],
    ):
        proc = subprocess.run(
            [str(UV), *args], capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    about = subprocess.run(
        [str(venv / "bin" / "tap-kapwork"), "--about", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    info = json.loads(about.stdout)
    assert info["name"] == "tap-kapwork"
    assert info["version"] == _version(dist[kind])
    assert "api_key" in info["settings"]["properties"]
    sandbox = subprocess.run(
        [str(venv / "bin" / "kapwork-sandbox"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sandbox.returncode == 0, sandbox.stderr
