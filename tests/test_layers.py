"""The layers of the repository hold (.importlinter), and the check would see a back-edge."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fusionlake", "transforms", "expectations", "flows")
LINT = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--config", str(root / ".importlinter")], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def copy_sources(dest: Path) -> None:
    """The packages' Python files (only: grimp reads nothing else) and the contract."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            target = dest / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    shutil.copyfile(ROOT / ".importlinter", dest / ".importlinter")


def test_the_repository_keeps_its_layers():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_back_edge_inside_a_function_breaks_the_contract(tmp_path):
    copy_sources(tmp_path)
    assert lint_imports(tmp_path).returncode == 0
    # the lake (the lowest layer) reaching up into the pipeline, hidden in a function
    planted = tmp_path / "fusionlake" / "lake" / "planted.py"
    planted.write_text("def f():\n    from fusionlake.pipeline import run\n    return run\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    assert "fusionlake.lake.planted -> fusionlake.pipeline.run" in done.stdout


def test_the_generator_stays_beside_the_layers(tmp_path):
    copy_sources(tmp_path)
    planted = tmp_path / "transforms" / "planted.py"
    planted.write_text("from fusionlake.synth import generate\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    assert "transforms.planted -> fusionlake.synth" in done.stdout
