from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from darla import cli
from darla.cli import Command, main
from darla.errors import ConfigError


@dataclass
class DemoConfig:
    env: str = "SeekAvoid"
    """environment family"""
    steps: int = 5
    """training steps"""
    mode: Literal["fast", "slow"] = "fast"
    tags: tuple[str, ...] = ()
    params: dict[str, Any] | None = None

    def validate(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps}")


def _run(cfg: DemoConfig) -> dict[str, Any]:
    return {
        "env": cfg.env,
        "steps": cfg.steps,
        "mode": cfg.mode,
        "tags": list(cfg.tags),
        "params": cfg.params,
    }


DEMO = Command(("demo",), DemoConfig, _run, "a demo command", positional=("env",))


@pytest.fixture
def demo(monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, ("demo",), ("test_core_cli:DEMO", "a demo command"))


def _json_last_line(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


def test_overrides_and_json_last_line(demo, capsys):
    code = main(
        [
            "demo",
            "FetchObject",
            "--steps",
            "7",
            "--mode",
            "slow",
            "--tags",
            "a",
            "b",
            "--params",
            "x=1",
            "y=true",
            "--json",
        ]
    )
    assert code == 0
    out = _json_last_line(capsys.readouterr().out)
    assert out == {
        "env": "FetchObject",
        "steps": 7,
        "mode": "slow",
        "tags": ["a", "b"],
        "params": {"x": 1, "y": True},
    }


def test_help_shows_field_docstrings(demo, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "training steps" in text and "--preset" in text and "--json" in text


def test_help_shows_a_nested_fields_default_from_its_parents_factory():
    """validate's `train` is TrainConfig(steps=300_000, ...): --help must say 300000, not the class's."""
    from darla.config import leaf_fields
    from darla.pipelines.validate import ValidateConfig
    from darla.vision.trainer import TrainConfig

    defaults = {name: default for name, _, default, _ in leaf_fields(ValidateConfig)}
    assert defaults["train.steps"] == ValidateConfig().train.steps == 300_000
    assert defaults["train.lr"] == 1e-4
    assert defaults["train.batch_size"] == TrainConfig().batch_size  # unchanged fields keep the class's


def test_bad_values_exit_2_with_a_clear_message(demo, capsys):
    assert main(["demo", "X", "--mode", "medium"]) == 2
    assert "'medium'" in capsys.readouterr().err
    assert main(["demo", "X", "--steps", "-1"]) == 2
    assert "steps must be >= 0" in capsys.readouterr().err
    assert main(["demo", "X", "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_config_file_is_applied(demo, capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 42\n")
    assert main(["demo", "X", "--config", str(path), "--json"]) == 0
    assert _json_last_line(capsys.readouterr().out)["steps"] == 42


def test_unknown_commands_suggest_close_names(capsys):
    assert main(["sea"]) == 2
    assert "did you mean 'see'" in capsys.readouterr().err
    assert main(["envs", "lst"]) == 2
    assert "did you mean 'list'" in capsys.readouterr().err


def test_top_level_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for words in cli.COMMANDS:
        assert " ".join(words) in out
