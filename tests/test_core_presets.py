"""Every preset section names a real command and only real config fields (a typo fails here,
not an hour into `darla run --preset quick`)."""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Any

import pytest
import yaml

from darla.cli import COMMANDS, load_command, parse_config
from darla.config import STAGE_SECTIONS, build_config, preset_names
from darla.envs import FAMILIES
from darla.errors import ConfigError, UnknownNameError

SECTIONS = {"_".join(words): words for words in COMMANDS}


@pytest.mark.parametrize("preset", preset_names())
def test_preset_sections_are_valid(preset: str) -> None:
    data = yaml.safe_load((resources.files("darla") / "presets" / f"{preset}.yaml").read_text())
    assert {"see", "act", "transfer", "run"} <= set(data)
    for section in set(data) - {"envs"}:
        assert section in SECTIONS, f"{preset}.yaml: section {section!r} is not a command"
        command = load_command(SECTIONS[section])
        try:
            build_config(command.config, preset=preset, section=section)
        except UnknownNameError:
            raise
        except ConfigError as exc:  # a required argument (a path, an image) the preset cannot know
            assert "need" in str(exc) or "missing" in str(exc), str(exc)


@pytest.mark.parametrize("preset", preset_names())
def test_per_env_settings_name_real_envs_and_fields(preset: str) -> None:
    data = yaml.safe_load((resources.files("darla") / "presets" / f"{preset}.yaml").read_text())
    for env, sections in (data.get("envs") or {}).items():
        assert env in FAMILIES, f"{preset}.yaml envs: {env!r} is not an env family"
        assert set(sections) <= set(STAGE_SECTIONS), f"{preset}.yaml envs.{env}: {set(sections)}"
        for section in ("run", "compare", *sections):
            command = load_command(SECTIONS[section])
            try:
                build_config(command.config, preset=preset, section=section, env=env)
            except UnknownNameError:
                raise
            except ConfigError as exc:
                assert "need" in str(exc) or "missing" in str(exc), str(exc)


def _parse(words: tuple[str, ...], argv: list[str]) -> Any:
    return parse_config(load_command(words), argv)[0]


def test_an_env_gets_its_own_budget_under_the_users_flags() -> None:
    seek = _parse(("run",), ["--preset", "quick"])
    car = _parse(("run",), ["--preset", "quick", "--env", "CarRacing"])
    assert (seek.act.n_envs, seek.act.max_episode_steps) == (16, 200)
    assert (car.act.n_envs, car.act.max_episode_steps, car.transfer.max_episode_steps) == (8, None, None)
    assert car.act.algo_hparams["ppo"]["n_steps"] == 256
    assert car.see == seek.see  # what the env does not override stays shared
    shifted = _parse(("run",), ["--preset", "quick", "--env", "CarRacing", "--shift", "colour"])
    assert shifted.act.n_envs == 8  # a shifted family takes its base's settings
    mine = _parse(("run",), ["--preset", "quick", "--env", "CarRacing", "--act.n-envs", "2"])
    assert mine.act.n_envs == 2 and mine.act.timesteps == car.act.timesteps
    act = _parse(("act",), ["--preset", "quick", "--env", "Reaching", "--mode", "pixels"])
    assert (act.n_envs, act.max_episode_steps) == (8, None)


def test_a_sweep_over_envs_gives_each_its_budget() -> None:
    cfg = _parse(
        ("compare",), ["--preset", "quick", "--env", "SeekAvoid", "CarRacing", "--act.timesteps", "64"]
    )
    runs = {run.env: run for run in cfg.runs()}
    assert runs["SeekAvoid"].act.n_envs == 16 and runs["CarRacing"].act.n_envs == 8
    assert runs["SeekAvoid"].act.timesteps == runs["CarRacing"].act.timesteps == 64  # flags apply to all
    assert runs["CarRacing"].transfer.max_episode_steps is None
    bad = dataclasses.replace(cfg, env_settings={"Reaching": {"act": {"n_envs": 2}}})
    with pytest.raises(ConfigError, match="Reaching"):
        bad.validate()
