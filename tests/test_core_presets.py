"""Every preset section names a real command and only real config fields (a typo fails here,
not an hour into `darla run --preset quick`)."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from darla.cli import COMMANDS, load_command
from darla.config import build_config, preset_names
from darla.errors import ConfigError, UnknownNameError

SECTIONS = {"_".join(words): words for words in COMMANDS}


@pytest.mark.parametrize("preset", preset_names())
def test_preset_sections_are_valid(preset: str) -> None:
    data = yaml.safe_load((resources.files("darla") / "presets" / f"{preset}.yaml").read_text())
    assert {"see", "act", "transfer", "run"} <= set(data)
    for section in data:
        assert section in SECTIONS, f"{preset}.yaml: section {section!r} is not a command"
        command = load_command(SECTIONS[section])
        try:
            build_config(command.config, preset=preset, section=section)
        except UnknownNameError:
            raise
        except ConfigError as exc:  # a required argument (a path, an image) the preset cannot know
            assert "need" in str(exc) or "missing" in str(exc), str(exc)
