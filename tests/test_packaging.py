"""The built wheel, installed into a fresh virtual environment, works outside the checkout.

The wheel is built from a copy of the sources (so the checkout gets no build/ folder) and installed
with `--no-deps --no-index`: nothing is downloaded. The new environment reaches the dependencies
already installed for the tests through a .pth line naming their site-packages; a plain path line
does not run the .pth files found there, so the checkout's editable install stays out of reach and
the commands below can only import the installed wheel (checked, not assumed).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd: list[str | Path], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`cmd` in `cwd` with the checkout off the import path; fails the test with its output on error."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """avssl's wheel, built without build isolation (no download) from a copy of the sources."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src)
    shutil.copytree(ROOT / "avssl", src / "avssl", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", dist, src], cwd=src)
    (built,) = dist.glob("avssl-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed; returns its bin/ folder."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", root], cwd=root)
    python = root / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "test_dependencies.pth").write_text("".join(f"{path}\n" for path in sorted(deps)))
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
         cwd=root)
    return root / "bin"


def test_the_wheel_ships_the_recipes_the_licence_and_the_type_marker(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "avssl" / "configs").rglob("*.yaml")}
    assert shipped and shipped <= names
    assert "avssl/py.typed" in names
    meta = zipfile.ZipFile(wheel).read(f"{wheel.name.split('-py3')[0]}.dist-info/METADATA").decode().splitlines()
    assert "License-Expression: Apache-2.0" in meta
    required = [line.split()[1] for line in meta if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not [r for r in required if r.startswith("transformers")], "transformers belongs in the export extra"
    assert 'Requires-Dist: transformers>=4.45; extra == "export"' in meta


def test_the_installed_package_runs_its_recipes_outside_the_checkout(venv, tmp_path):
    where = _run([venv / "python", "-c", "import avssl.recipes.builtin as b; print(b.CONFIG_DIR)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv.parent), "the checkout was imported, not the wheel"

    listing = _run([venv / "avssl", "configs"], cwd=tmp_path).stdout
    assert "pretrain/tiny  avssl pretrain -c tiny" in listing and "finetune/base" in listing
    assert "--out DIR" in _run([venv / "avssl", "demo", "--help"], cwd=tmp_path).stdout

    _run([venv / "python", "-c", "from avssl.data.synthetic import make_corpus; "
          "make_corpus('corpus', num_classes=2, videos_per_class=3, duration=2.0)"], cwd=tmp_path)
    out = _run([venv / "avssl", "pretrain", "-c", "tiny", "data.train=corpus/train.csv", "data.val=corpus/val.csv",
                "out=run", "train.epochs=1", "data.batch_size=4", "data.num_workers=0", "model.num_frames=8",
                "model.time_bins=4", "train.loggers=[]"], cwd=tmp_path).stdout
    assert "finished at step" in out, out[-2000:]
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "temperature: 0.1" in saved and "input_norm: clip" in saved  # the tiny recipe, not the defaults
    assert list((tmp_path / "run" / "checkpoints").glob("step_*"))
    assert not (tmp_path / "run" / "tensorboard").exists()  # train.loggers reaches the trainer
