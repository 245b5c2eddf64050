"""The package's metadata: dependency floors the code really runs on, and the console scripts."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from conftest import ROOT

# The newest feature the code uses from each dependency, and the release that introduced it. The floor in
# pyproject.toml must not be older; a newer feature used later raises the version here and the floor with it.
FEATURES = {
    "lightning": ("2.6", "Trainer.fit(..., weights_only=...)"),
    "torch": ("2.4", "torch.get_autocast_dtype"),
}


def floors() -> dict[str, tuple[int, ...]]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    found = {}
    for dep in deps:
        name, floor = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", dep).groups()
        found[name] = tuple(int(x) for x in floor.split("."))
    return found


@pytest.mark.parametrize("package", sorted(FEATURES))
def test_dependency_floors_cover_the_features_used(package: str) -> None:
    needed, feature = FEATURES[package]
    assert floors()[package] >= tuple(int(x) for x in needed.split(".")), f"{package} floor is older than {feature}"


def test_the_features_named_exist_in_the_installed_releases() -> None:
    import lightning
    import torch

    assert "weights_only" in inspect.signature(lightning.Trainer.fit).parameters
    assert "weights_only" in inspect.signature(lightning.LightningModule.load_from_checkpoint).parameters
    assert callable(torch.get_autocast_dtype)


def test_every_dependency_has_a_floor() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert len(floors()) == len(deps)


@pytest.mark.parametrize("command", ["train", "translate", "evaluate", "average", "report"])
def test_console_scripts_run_the_commands(command: str, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / f"seq2seq-lit-{command}"
    assert script.is_file(), f"{script} not installed: pip install -e ."
    result = subprocess.run([script, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"seq2seq_lit.{command}" in result.stdout
