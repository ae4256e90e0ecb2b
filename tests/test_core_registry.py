"""Registries: one mechanism for darla's own objects and plug-ins, with checks at registration."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any

import pytest

import darla.registry as registry_mod
from darla.errors import ConfigError, UnknownNameError
from darla.registry import Registry
from darla.vision import MODELS, ModelConfig, VisionModel
from darla.vision.base import check_model


def test_a_name_registered_twice_is_an_error_naming_both() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("a", 1, origin="package one")
    reg.register("a", 1)  # the same object again is harmless
    with pytest.raises(ConfigError, match=r"thing 'a' is already registered \(by package one\); pkg two"):
        reg.register("a", 2, origin="pkg two")


def test_checks_run_at_registration() -> None:
    def positive(name: str, value: int) -> None:
        if value <= 0:
            raise ConfigError(f"{name} must be positive")

    reg: Registry[int] = Registry("number", check=positive)
    reg.register("one", 1)
    with pytest.raises(ConfigError, match="minus must be positive"):
        reg.register("minus", -1)
    assert "minus" not in reg


class NoLoss(VisionModel):
    name = "no_loss"


@dataclass
class TinyConfig(ModelConfig):
    pass


class Tiny(VisionModel):
    name = "tiny_plugin"
    config_cls = TinyConfig

    def loss(self, batch: Any, step: int = 0) -> Any:
        return super().loss(batch, step)


def test_a_model_that_does_not_meet_the_vision_interface_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"subclass of darla\.vision\.VisionModel"):
        check_model("x", object)
    with pytest.raises(ConfigError, match="does not implement loss"):
        check_model("no_loss", NoLoss)
    with pytest.raises(ConfigError, match="registered as 'other'"):
        check_model("other", Tiny)
    check_model("tiny_plugin", Tiny)


def test_plugins_join_through_entry_points_on_first_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [EntryPoint("tiny_plugin", f"{__name__}:Tiny", "darla.models")]
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: points if group == "darla.models" else [])
    reg: Registry[type[VisionModel]] = Registry("model", group="darla.models", check=check_model)
    assert reg.get("tiny_plugin") is Tiny
    assert "tiny_plugin" in reg.origin("tiny_plugin")
    with pytest.raises(UnknownNameError, match="tiny_plugin"):
        reg.get("tiny_plugn")


def test_a_broken_or_clashing_plugin_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    beta_vae = MODELS.get("beta_vae")  # darla's own, loaded before the fake entry points
    broken = [EntryPoint("bad", "no_such_module_xyz:Thing", "darla.models")]
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: broken)
    reg: Registry[Any] = Registry("model", group="darla.models")
    with pytest.raises(ConfigError, match=r"cannot load plug-in bad = no_such_module_xyz:Thing"):
        reg.names()
    clash = [EntryPoint("beta_vae", f"{__name__}:Tiny", "darla.models")]
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: clash)
    reg2: Registry[Any] = Registry("model", group="darla.models")
    reg2.register("beta_vae", beta_vae)
    with pytest.raises(ConfigError, match=r"'beta_vae' is already registered.*plug-in beta_vae"):
        reg2.names()


def test_unknown_plugin_group_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"darla\.models"):
        Registry("x", group="darla.modelz")


def test_a_plugin_that_misses_the_interface_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [EntryPoint("no_loss", f"{__name__}:NoLoss", "darla.models")]
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: points)
    reg: Registry[type[VisionModel]] = Registry("model", group="darla.models", check=check_model)
    with pytest.raises(ConfigError, match=r"does not implement loss.*\(plug-in no_loss = .*:NoLoss"):
        reg.names()
