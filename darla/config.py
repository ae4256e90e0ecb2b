"""Typed config dataclasses: strict YAML/dict round trip, presets, content hashes.

Every stage is driven by one dataclass. Field docstrings (a string literal right after the
field) become the CLI's `--help` text. Nested dataclasses are addressed with dotted names
(`--see.lr 1e-4`). Unknown keys are errors with a "did you mean", never silently ignored.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import inspect
import itertools
import json
import textwrap
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from darla.errors import ConfigError, UnknownNameError
from darla.registry import unknown_name_message

C = TypeVar("C")

PRESETS = ("smoke", "quick", "paper")


# ----------------------------------------------------------------------------- docstrings
@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass (and its bases), keyed by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0]
        if not isinstance(body, ast.ClassDef):
            continue
        stmts = body.body
        for stmt, nxt in itertools.pairwise(stmts):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


# ----------------------------------------------------------------------------- types
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def strip_optional(tp: Any) -> tuple[Any, bool]:
    if _is_union(tp):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated type, or raise ConfigError naming `where`."""
    inner, optional = strip_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional or tp is Any:
            return None
        raise ConfigError(f"{where}: None is not allowed (expected {getattr(tp, '__name__', tp)})")
    tp = inner
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise UnknownNameError(
                unknown_name_message(f"value for {where}", value, [str(c) for c in choices])
            )
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v] if value else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        elem = args[0] if args else Any
        items = [_coerce(v, elem, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if tp is Path:
        return Path(value)
    return value


# ----------------------------------------------------------------------------- dict round trip
def to_dict(cfg: Any) -> Any:
    """A plain, YAML/JSON-safe structure (tuples become lists, paths strings)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {str(k): to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def from_dict(cls: type[C], data: dict[str, Any] | None, *, where: str = "") -> C:
    """Build `cls` from a mapping; unknown keys and bad values raise ConfigError."""
    data = dict(data or {})
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in data:
        if key not in names:
            label = f"config key for {cls.__name__}" + (f" (at {where})" if where else "")
            raise UnknownNameError(unknown_name_message(label, key, names))
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], f"{where}.{name}" if where else name)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `override` into a copy of `base` (nested dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def hash_dict(cfg: Any) -> dict[str, Any]:
    """The part of a config that decides results: fields listed in `hash_exclude` are dropped."""
    if not (dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)):
        return to_dict(cfg)
    exclude = set(getattr(cfg, "hash_exclude", ()))
    # options added after stages were finished: at their default they leave those stages' hash alone
    for name in getattr(cfg, "hash_omit_default", ()):
        if getattr(cfg, name) == _default_of(type(cfg), name):
            exclude.add(name)
    return {f.name: hash_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.name not in exclude}


def _default_of(cls: type, name: str) -> Any:
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise ConfigError(f"{cls.__name__}.hash_omit_default names {name!r}, a field without a default")


def config_hash(cfg: Any) -> str:
    """A short content hash of the result-deciding fields, used to skip unchanged stages."""
    text = json.dumps(hash_dict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- YAML
def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(to_dict(data), sort_keys=False, default_flow_style=False)


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse YAML {path}: {exc}") from None


def load_config(cls: type[C], path: str | Path) -> C:
    return from_dict(cls, load_yaml(path))


# ----------------------------------------------------------------------------- presets
def preset_names() -> list[str]:
    root = resources.files("darla") / "presets"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


STAGE_SECTIONS = ("see", "act", "transfer")
"""Preset sections that `run` and `compare` nest (`run.act` is the act section's settings)."""


def _preset_data(preset: str) -> dict[str, Any]:
    names = preset_names()
    if preset not in names:
        raise UnknownNameError(unknown_name_message("preset", preset, names))
    text = (resources.files("darla") / "presets" / f"{preset}.yaml").read_text()
    return dict(yaml.safe_load(text) or {})


def preset_env_settings(preset: str | None, env: str) -> dict[str, Any]:
    """Preset `preset`'s `envs.<env>` overrides (a family's own budget: CarRacing's longer rollouts,
    Reaching's shorter episodes), by section; a shifted family (`CarRacing@colour`) takes its base's."""
    if preset is None:
        return {}
    per_env = dict(_preset_data(preset).get("envs") or {})
    return dict(per_env.get(env) or per_env.get(env.split("@")[0]) or {})


def preset_section(preset: str | None, section: str, env: str | None = None) -> dict[str, Any]:
    """The `section` mapping of preset `preset` (empty when the preset says nothing about it), with the
    preset's overrides for the env family `env`: `envs.<env>.<section>` for any command, and
    `envs.<env>.{see,act,transfer}` nested into `run` and `compare`."""
    if preset is None:
        return {}
    values = dict(_preset_data(preset).get(section) or {})
    overrides = preset_env_settings(preset, env) if env else {}
    values = merge(values, dict(overrides.get(section) or {}))
    if section in ("run", "compare"):
        values = merge(values, {s: overrides[s] for s in STAGE_SECTIONS if s in overrides})
    return values


def build_config(
    cls: type[C],
    *,
    preset: str | None = None,
    section: str,
    overrides: dict[str, Any] | None = None,
    env: str | None = None,
) -> C:
    """Defaults <- preset section (with its overrides for `env`) <- overrides, validated."""
    data = merge(preset_section(preset, section, env), overrides or {})
    return from_dict(cls, data)


def leaf_fields(cls: type, prefix: str = "", parent: Any = None) -> list[tuple[str, Any, Any, str]]:
    """(dotted name, type, default, doc) of every leaf field, nested dataclasses flattened.

    A nested field's default is read from its parent's default instance (`parent`), so a
    factory such as validate's `train` (300k steps) shows its own values, not the class's."""
    out: list[tuple[str, Any, Any, str]] = []
    hints = _hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        inner, _ = strip_optional(tp)
        if parent is not None:
            default = getattr(parent, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if dataclasses.is_dataclass(inner) and isinstance(inner, type):
            nested = default if dataclasses.is_dataclass(default) else None
            out.extend(leaf_fields(inner, prefix + f.name + ".", nested))
        else:
            out.append((prefix + f.name, tp, default, docs.get(f.name, "")))
    return out
