"""The project's style gates run as tests, so CI fails on a lint or type error like on any bug."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["darla", "envs", "vision", "agents", "pipelines", "tests", "examples"]
PLUGIN_EXAMPLE = "examples/darla-plugin-example/darla_plugin_example"


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", *SOURCES],
        ["ruff", "format", "--check", *SOURCES],
        ["mypy", "darla", "envs", "vision", "agents", "pipelines", PLUGIN_EXAMPLE],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_style_gate(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
