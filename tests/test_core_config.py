from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pytest

from darla.config import (
    build_config,
    config_hash,
    dump_yaml,
    field_docs,
    from_dict,
    load_config,
    merge,
    preset_names,
    to_dict,
)
from darla.errors import ConfigError, UnknownNameError
from darla.registry import Registry, check_choice


@dataclass
class Inner:
    lr: float = 1e-3
    """learning rate"""
    layers: tuple[int, ...] = (32, 64)


@dataclass
class Outer:
    hash_exclude: ClassVar[tuple[str, ...]] = ("out",)
    name: str = "x"
    """the name"""
    mode: Literal["a", "b"] = "a"
    """which mode"""
    steps: int = 10
    flag: bool = False
    out: str = "runs"
    inner: Inner = field(default_factory=Inner)
    params: dict[str, Any] = field(default_factory=dict)
    maybe: int | None = None


def test_round_trip_through_yaml(tmp_path):
    cfg = Outer(
        name="y", mode="b", steps=3, flag=True, inner=Inner(lr=0.5, layers=(1, 2, 3)), params={"k": 1}
    )
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(Outer, path) == cfg


def test_unknown_key_suggests_the_close_name():
    with pytest.raises(ConfigError, match=r"'stpes'.*did you mean 'steps'"):
        from_dict(Outer, {"stpes": 3})
    with pytest.raises(ConfigError, match=r"'lrr'.*did you mean 'lr'"):
        from_dict(Outer, {"inner": {"lrr": 3}})


def test_literal_and_type_errors_name_the_value_and_choices():
    with pytest.raises(ConfigError, match=r"'c'.*Valid choices: a, b"):
        from_dict(Outer, {"mode": "c"})
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(Outer, {"steps": "ten"})
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(Outer, {"steps": 2.5})
    with pytest.raises(ConfigError, match="true/false"):
        from_dict(Outer, {"flag": "perhaps"})


def test_coercion_of_cli_strings():
    cfg = from_dict(Outer, {"steps": "1e3", "flag": "yes", "maybe": "none", "inner": {"layers": "4,5"}})
    assert cfg.steps == 1000 and cfg.flag is True and cfg.maybe is None and cfg.inner.layers == (4, 5)


def test_hash_ignores_excluded_fields_but_not_others():
    base = Outer()
    assert config_hash(base) == config_hash(Outer(out="elsewhere"))
    assert config_hash(base) != config_hash(Outer(steps=11))
    assert config_hash(base) != config_hash(Outer(inner=Inner(lr=0.1)))


def test_field_docstrings_are_read():
    docs = field_docs(Outer)
    assert docs["name"] == "the name" and docs["mode"] == "which mode"
    assert field_docs(Inner)["lr"] == "learning rate"


def test_merge_is_deep_and_does_not_mutate():
    base = {"a": {"b": 1, "c": 2}, "d": 1}
    out = merge(base, {"a": {"b": 5}})
    assert out == {"a": {"b": 5, "c": 2}, "d": 1} and base["a"]["b"] == 1


def test_unknown_preset_lists_valid_ones():
    assert {"smoke", "quick", "paper"} <= set(preset_names())
    with pytest.raises(UnknownNameError, match=r"'quik'.*did you mean 'quick'"):
        build_config(Outer, preset="quik", section="nothing")


def test_to_dict_is_plain():
    d = to_dict(Outer())
    assert d["inner"]["layers"] == [32, 64] and isinstance(d["inner"], dict)


def test_registry_lookup_and_errors():
    reg: Registry[int] = Registry("model")
    reg.register("beta_vae", 1)

    @reg.register("vae")
    def _vae() -> None: ...

    assert reg.get("beta_vae") == 1 and reg.names() == ["beta_vae", "vae"] and "vae" in reg
    with pytest.raises(
        UnknownNameError, match=r"unknown model 'vea'; did you mean 'vae'\? Valid choices: beta_vae, vae"
    ):
        reg.get("vea")
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("vae", 2)
    with pytest.raises(UnknownNameError, match="Valid choices: x, y"):
        check_choice("mode", "z", ["x", "y"])
