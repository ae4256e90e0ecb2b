"""The `darla` command line: a thin layer that turns arguments into a config dataclass.

Each subcommand is a `Command` (config class + run function) living next to the code it
drives; this module only knows where to import it from, so `darla --help` stays fast and the
core never imports the stages at import time.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from darla import locks
from darla.artifacts import check_out
from darla.config import (
    STAGE_SECTIONS,
    build_config,
    dump_yaml,
    leaf_fields,
    load_yaml,
    merge,
    preset_env_settings,
    preset_names,
    preset_section,
    set_dotted,
    strip_optional,
)
from darla.errors import ConfigError, DarlaError
from darla.log import setup_logging
from darla.registry import unknown_name_message
from darla.runtime import sigint_as_interrupt, sigterm_as_interrupt

logger = logging.getLogger("darla")


@dataclass(frozen=True)
class Command:
    """A subcommand: its words, its config dataclass, and the function that runs it."""

    words: tuple[str, ...]
    config: type
    run: Callable[[Any], dict[str, Any]]
    help: str
    positional: tuple[str, ...] = ()
    """Config fields taken as positional arguments (e.g. the env name of `envs show`)."""
    render: Callable[[dict[str, Any]], str] | None = None
    """Turns the result into text for people; the default prints it as YAML."""
    out_is_file: bool = False
    """The config's `out` names a file to write (a PNG), not a folder."""

    @property
    def section(self) -> str:
        return "_".join(self.words)


# words -> (module:attribute of the Command, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("envs", "list"): ("darla.envs.cli:LIST", "list env families and their source/target/ood domains"),
    ("envs", "show"): ("darla.envs.cli:SHOW", "render a grid of frames, one row per domain"),
    ("see",): (
        "darla.pipelines.orchestrate.lone:SEE",
        "stage 1: collect source frames, train a vision model",
    ),
    ("act",): (
        "darla.pipelines.stages.act:COMMAND",
        "stage 2: train a policy on frozen features in source domains",
    ),
    ("transfer",): (
        "darla.pipelines.stages.transfer:COMMAND",
        "stage 3: zero-shot evaluation on target domains",
    ),
    ("run",): ("darla.pipelines.orchestrate.run:COMMAND", "see -> act -> transfer -> report, resumable"),
    ("compare",): (
        "darla.pipelines.orchestrate.compare:COMMAND",
        "backbone sweeps on local workers or Ray, with the paper-style report",
    ),
    ("report",): ("darla.pipelines.analysis.report:COMMAND", "tables, CIs and plots from a run folder"),
    ("evaluate",): (
        "darla.pipelines.analysis.evaluate:COMMAND",
        "disentanglement metrics of a trained vision model",
    ),
    ("probe",): (
        "darla.pipelines.analysis.probe:COMMAND",
        "linear probes: are the task's factors in a model's features, per domain",
    ),
    ("validate",): (
        "darla.pipelines.analysis.validate:COMMAND",
        "train zoo models on sprites, compare with the literature",
    ),
    ("bench", "env"): ("darla.pipelines.bench.env:COMMAND", "benchmark env steps/s and frame collection"),
    ("bench", "see"): ("darla.pipelines.bench.see:COMMAND", "benchmark vision training and encoding"),
    ("bench", "act"): ("darla.pipelines.bench.act:COMMAND", "benchmark PPO on frozen features vs pixels"),
    ("bench", "shift"): (
        "darla.pipelines.bench.shift:COMMAND",
        "benchmark pixel shift suites: wrapped / unwrapped env steps/s",
    ),
    ("bench", "compare"): (
        "darla.pipelines.bench.compare:COMMAND",
        "benchmark sweeps: N independent trials on 1 vs 2 local workers, and on Ray",
    ),
    ("scan", "train"): (
        "darla.pipelines.scan:TRAIN",
        "SCAN: ground env-factor symbols in a frozen vision model",
    ),
    ("scan", "describe"): ("darla.pipelines.scan:DESCRIBE", "SCAN: symbols for an image"),
    ("scan", "imagine"): ("darla.pipelines.scan:IMAGINE", "SCAN: images for a symbol expression"),
}


def load_command(words: tuple[str, ...]) -> Command:
    target, _ = COMMANDS[words]
    module_name, attr = target.split(":")
    command = getattr(importlib.import_module(module_name), attr)
    if not isinstance(command, Command):
        raise TypeError(f"{target} is not a darla.cli.Command")
    return command


def _arg_type(tp: Any) -> tuple[dict[str, Any], str]:
    """argparse keyword arguments for a field type, plus a metavar hint."""
    inner, _ = strip_optional(tp)
    origin = get_origin(inner)
    if inner is bool:
        return {"action": argparse.BooleanOptionalAction}, ""
    if origin is Literal:
        choices = [str(c) for c in get_args(inner)]
        return {"metavar": "{" + ",".join(choices) + "}"}, ""
    if origin in (list, tuple):
        return {"nargs": "+"}, "VALUE"
    if origin is dict:
        return {"nargs": "+", "type": _key_value}, "KEY=VALUE"
    if inner is int:
        return {}, "INT"
    if inner is float:
        return {}, "FLOAT"
    return {}, "VALUE"


def _key_value(text: str) -> tuple[str, Any]:
    """`key=value` with the value parsed as YAML (so numbers and booleans keep their type)."""
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value) if value else None


def build_parser(command: Command) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="darla " + " ".join(command.words),
        description=command.help
        + (f"\n\n{command.config.__doc__.strip()}" if command.config.__doc__ else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    general = parser.add_argument_group("general")
    general.add_argument("--preset", help=f"named preset: {', '.join(preset_names())}")
    general.add_argument("--config", type=Path, help="YAML file of config fields (applied after the preset)")
    general.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    general.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    general.add_argument(
        "--wait",
        action="store_true",
        help="when another darla command is writing a folder this one writes, wait for it (default: stop)",
    )
    fields = parser.add_argument_group("config fields")
    for name, tp, default, doc in leaf_fields(command.config):
        kwargs, metavar = _arg_type(tp)
        shown = "required" if default is dataclasses.MISSING else f"default: {default!r}"
        help_text = f"{doc} ({shown})" if doc else f"({shown})"
        if name in command.positional:
            kwargs.pop("action", None)
            fields.add_argument(name, help=help_text, **kwargs)
            continue
        if metavar and "metavar" not in kwargs and "action" not in kwargs:
            kwargs["metavar"] = metavar
        flag = "--" + name.replace("_", "-")
        fields.add_argument(flag, dest=name, help=help_text, **kwargs)
    return parser


def parse_config(command: Command, argv: Sequence[str]) -> tuple[Any, argparse.Namespace]:
    parser = build_parser(command)
    ns, extra = parser.parse_known_args(list(argv))
    if extra:
        raise ConfigError(_unknown_arguments(command, parser, extra))
    overrides: dict[str, Any] = {}
    for name, *_ in leaf_fields(command.config):
        if hasattr(ns, name):
            value = getattr(ns, name)
            if isinstance(value, list) and value and isinstance(value[0], tuple):
                value = dict(value)
            elif (
                isinstance(value, list) and len(value) == 1 and isinstance(value[0], str) and "," in value[0]
            ):
                value = [v for v in value[0].split(",") if v]
            set_dotted(overrides, name, value)
    file_values = load_yaml(ns.config) if getattr(ns, "config", None) else {}
    if not isinstance(file_values, dict):
        kind = "a list" if isinstance(file_values, list) else f"a single value ({file_values!r})"
        raise ConfigError(
            f"--config {ns.config} holds {kind}; a config file is a mapping of fields, e.g. "
            "`seed: 1` or `train: {steps: 500}`"
        )
    values = merge(file_values, overrides)
    preset = getattr(ns, "preset", None)
    envs = _envs_of(values, preset, command)
    if len(envs) > 1 and "env_settings" in {f.name for f in dataclasses.fields(command.config)}:
        values = merge({"env_settings": _per_env_settings(preset, envs, values)}, values)
    one_env = envs[0] if len(envs) == 1 else None
    cfg: Any = build_config(
        command.config, preset=preset, section=command.section, overrides=values, env=one_env
    )
    return cfg, ns


def _envs_of(values: dict[str, Any], preset: str | None, command: Command) -> list[str]:
    """The env families a command runs on, for the preset's per-env settings (none known: e.g. an act
    that takes its env from its see folder)."""
    env = values.get("env", preset_section(preset, command.section).get("env"))
    envs = [str(e) for e in env] if isinstance(env, (list, tuple)) else ([str(env)] if env else [])
    shift = values.get("shift")
    return [f"{e}@{shift}" for e in envs] if shift else envs


def _per_env_settings(preset: str | None, envs: list[str], values: dict[str, Any]) -> dict[str, Any]:
    """A sweep over several envs: each env's preset overrides, under the stage settings given on the
    command line or in --config (those apply to every env)."""
    given = {s: values[s] for s in STAGE_SECTIONS if s in values}
    out = {}
    for env in envs:
        own = {s: v for s, v in preset_env_settings(preset, env).items() if s in STAGE_SECTIONS}
        if own:
            out[env.split("@")[0]] = merge(own, given)
    return out


def _unknown_arguments(command: Command, parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """argparse's "unrecognized arguments", with the closest options (as `--params` keys have)."""
    words = " ".join(command.words)
    bad = next((a for a in extra if a.startswith("-")), extra[0])
    if not bad.startswith("-"):
        return f"unexpected argument {bad!r} for 'darla {words}' (`darla {words} --help` lists its options)"
    name = bad.split("=", 1)[0]
    flags = [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]
    close = difflib.get_close_matches(name, flags, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return f"unknown option {name!r} for 'darla {words}'{hint} (`darla {words} --help` lists every option)"


def _top_help(prefix: tuple[str, ...] = ()) -> str:
    lines = ["usage: darla COMMAND [options]   (darla COMMAND --help for its options)", "", "commands:"]
    for words, (_, help_text) in COMMANDS.items():
        if words[: len(prefix)] == prefix:
            lines.append(f"  {' '.join(words):<18} {help_text}")
    return "\n".join(lines)


def resolve_words(argv: Sequence[str]) -> tuple[tuple[str, ...], list[str]]:
    """Split argv into the command's words and its arguments; unknown words are errors."""
    for n in (2, 1):
        words = tuple(argv[:n])
        if words in COMMANDS:
            return words, list(argv[n:])
    first = argv[0] if argv else ""
    groups = sorted({w[0] for w in COMMANDS})
    if first in groups:
        subs = sorted(w[1] for w in COMMANDS if w[0] == first and len(w) > 1)
        second = argv[1] if len(argv) > 1 else ""
        if second in ("", "-h", "--help"):
            raise SystemExit(_top_help((first,)))
        raise DarlaError(unknown_name_message(f"'darla {first}' subcommand", second, subs))
    raise DarlaError(unknown_name_message("command", first, groups))


def run_command(command: Command, argv: Sequence[str]) -> dict[str, Any]:
    cfg, ns = parse_config(command, argv)
    out = getattr(cfg, "out", None)
    if isinstance(out, (str, Path)) and str(out):
        check_out(out, file=command.out_is_file)
    setup_logging(getattr(ns, "log_level", "INFO"))
    with locks.session(wait=getattr(ns, "wait", False)):  # the folders it locks are free again after
        result = command.run(cfg)
    if getattr(ns, "json", False):
        print(json.dumps(result, default=str))
    elif command.render is not None:
        print(command.render(result))
    else:
        print(dump_yaml(result).rstrip())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_help())
        return 0
    try:
        words, rest = resolve_words(argv)
        command = load_command(words)
        # Ctrl-C and `kill` stop a command as an interrupt (stages checkpoint first), even when it was
        # started with SIGINT ignored, as a script's `darla run ... &` is
        with sigint_as_interrupt(), sigterm_as_interrupt():
            run_command(command, rest)
    except DarlaError as exc:
        print(f"darla: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("darla: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
