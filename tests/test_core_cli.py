from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
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
    from darla.pipelines.analysis.validate import ValidateConfig
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


@pytest.mark.parametrize("text", ["- steps: 3\n- mode: slow\n", "42\n", "just words\n"])
def test_a_config_file_must_be_a_mapping(demo, capsys, tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert main(["demo", "X", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("darla: error:") and str(path) in err and "mapping" in err
    assert "Traceback" not in err


def test_unknown_options_suggest_close_names(demo, capsys):
    assert main(["demo", "X", "--stepz", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("darla: error:") and "'--stepz'" in err and "did you mean '--steps'" in err
    assert main(["see", "--train.stepz", "5"]) == 2
    err = capsys.readouterr().err
    assert "'--train.stepz'" in err and "did you mean '--train.steps'" in err
    assert "darla see --help" in err


# every command with an --out: (argv without --out, whether --out names a file)
OUT_COMMANDS = {
    "see": (["see"], False),
    "act": (["act", "--mode", "pixels"], False),
    "transfer": (["transfer", "--act", "runs/x/act/pixels/ppo/s0"], False),
    "run": (["run"], False),
    "validate": (["validate"], False),
    "probe": (["probe", "--see", "runs/x/see/vae"], False),
    "report": (["report", "--run", "runs/x"], False),
    "scan train": (["scan", "train", "--vision", "runs/x/see/beta_vae"], False),
    "envs show": (["envs", "show", "SeekAvoid"], True),
    "scan imagine": (["scan", "imagine", "floor=0", "--scan", "runs/x/scan/v"], True),
}


@pytest.fixture
def unwritable(tmp_path):
    """A folder this process cannot write into (root writes through permissions: /proc it cannot)."""
    if os.geteuid() == 0:
        if not Path("/proc/self").is_dir():
            pytest.skip("needs /proc when run as root")
        yield Path("/proc/darla-test")
        return
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# each command with each --out it must refuse: a folder command refuses a file, a file command a folder
BAD_OUTS = [
    (command, where)
    for command, (_, is_file) in OUT_COMMANDS.items()
    for where in ("under-a-file", "a-folder" if is_file else "a-file", "not-writable")
]


@pytest.mark.parametrize(("command", "where"), BAD_OUTS)
def test_a_bad_out_is_a_one_line_error_and_nothing_is_written(
    command, where, tmp_path, unwritable, capsys, monkeypatch
):
    argv, _ = OUT_COMMANDS[command]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "afolder").mkdir()
    out = {
        "under-a-file": tmp_path / "afile" / "sub" / "out.png",
        "a-file": tmp_path / "afile",
        "a-folder": tmp_path / "afolder",
        "not-writable": unwritable / "out.png",
    }[where]
    before = _tree(tmp_path)
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("darla: error:") and "--out" in err and "Traceback" not in err
    assert {"under-a-file": "is a file", "a-file": "is a file", "a-folder": "is a folder",
            "not-writable": "not writable"}[where] in err  # fmt: skip
    assert _tree(tmp_path) == before


def test_main_takes_sigint_even_when_started_with_it_ignored():
    """A script's `darla run ... &` starts with SIGINT ignored; Ctrl-C / kill -INT must stop it."""
    import signal
    import subprocess
    import sys

    code = (
        "import signal, sys; from darla import cli; "
        "cli.load_command = lambda words: None; "
        "cli.run_command = lambda *a: signal.raise_signal(signal.SIGINT); "
        "sys.exit(cli.main(['see']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.returncode == 130 and "interrupted" in proc.stderr
