"""`darla envs list` and `darla envs show`: what the env suite holds, and what it looks like."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from darla.artifacts import atomic_save
from darla.cli import Command
from darla.errors import ConfigError
from darla.seeding import derive_seed

logger = logging.getLogger(__name__)


@dataclass
class EnvsListConfig:
    """List every env family with its gym id and its source / target / ood domains."""

    env: str | None = None
    """Show only this family (default: all)."""


def run_list(cfg: EnvsListConfig) -> dict[str, Any]:
    from darla.envs import FAMILIES, SUITES, get_family
    from darla.envs.shift import LEVEL_SPLITS

    names = FAMILIES.names() if cfg.env is None else [get_family(cfg.env).name]
    envs = {}
    for name in names:
        fam = FAMILIES.get(name)
        envs[name] = {
            "id": fam.gym_id,
            **{split: list(fam.splits[split]) for split in ("source", "target", "ood")},
        }
    suites = {name: {"description": suite.description, **LEVEL_SPLITS} for name, suite in SUITES.items()}
    return {"envs": envs, "shift_suites": suites}


def render_list(result: dict[str, Any]) -> str:
    from darla.envs import get_family

    lines = []
    for name, entry in result["envs"].items():
        fam = get_family(name)
        lines.append(f"{name}  ({entry['id']})  {fam.description}")
        lines.append(f"  {'domain':<26} {'split':<7} {'level':<5} description")
        for split in ("source", "target", "ood"):
            for domain in entry[split]:
                spec = fam.domains[domain]
                lines.append(f"  {domain:<26} {split:<7} {spec.difficulty:<5} {spec.description}")
        lines.append("")
    suites = result.get("shift_suites") or {}
    if suites:
        lines.append("Shift suites: any family or Gymnasium id with RGB frames as <env>@<suite>")
        lines.append(
            "(e.g. SeekAvoid@colour, CartPole-v1@distractors; `darla envs show <env> --shift <suite>`)"
        )
        for name, entry in suites.items():
            levels = "; ".join(f"{split}: {', '.join(entry[split])}" for split in ("source", "target", "ood"))
            lines.append(f"  {name:<12} {entry['description']}")
            lines.append(f"  {'':<12} levels {levels}")
    return "\n".join(lines).rstrip()


LIST = Command(
    words=("envs", "list"),
    config=EnvsListConfig,
    run=run_list,
    help="list env families and their source/target/ood domains",
    render=render_list,
)


@dataclass
class EnvsShowConfig:
    """Render a grid of frames, one row per domain, for a person to look at."""

    env: str
    """Env family (e.g. SeekAvoid) or its gym id; any Gymnasium id with --shift."""
    shift: str | None = None
    """Shift suite to show the env through (colour, distractors, background): family <env>@<suite>."""
    domain: tuple[str, ...] = ()
    """Domains to show, one row each; split names (source, target, ood) expand (default: all)."""
    out: Path = Path("grid.png")
    """PNG file to write."""
    frames: int = 6
    """Frames per row (different episodes, a few object-seeking steps in)."""
    size: int = 64
    """Observation size in pixels."""
    scale: int = 2
    """Upscaling of each frame in the grid."""
    seed: int = 0
    """Seed of the episodes shown (the same in every row, so rows differ only in appearance)."""

    def validate(self) -> None:
        if self.frames < 1 or self.size < 8 or self.scale < 1:
            raise ConfigError(
                f"need frames >= 1, size >= 8, scale >= 1; got {self.frames}, {self.size}, {self.scale}"
            )


def family_name(cfg: EnvsShowConfig) -> str:
    """The family shown: `env`, or `env@shift` with --shift."""
    return cfg.env if cfg.shift is None else f"{cfg.env}@{cfg.shift}"


def domain_rows(cfg: EnvsShowConfig) -> tuple[list[str], np.ndarray]:
    """(domain names, frames (rows, frames, H, W, 3)): the same episodes in every domain."""
    from darla.envs import get_family

    fam = get_family(family_name(cfg))
    names = list(fam.resolve_domains(list(cfg.domain) if cfg.domain else ["all"]))
    env = fam.make(names[0], seed=cfg.seed, size=cfg.size).unwrapped
    grid = np.zeros((len(names), cfg.frames, cfg.size, cfg.size, 3), dtype=np.uint8)
    try:
        for r, name in enumerate(names):
            for c in range(cfg.frames):
                episode_seed = derive_seed(cfg.seed, "show", c)
                obs, _ = env.reset(seed=episode_seed, options={"domain": name})
                policy, rng = fam.show_policy(), np.random.default_rng(episode_seed)
                policy.reset(env, rng)
                for _ in range(3 * c):
                    obs, _, terminated, truncated, _ = env.step(policy.act(env, rng))
                    if terminated or truncated:  # short episodes (CartPole): show the last frame
                        break
                grid[r, c] = obs
    finally:
        env.close()
    return names, grid


def run_show(cfg: EnvsShowConfig) -> dict[str, Any]:
    from PIL import Image, ImageDraw

    from darla.envs import get_family

    fam = get_family(family_name(cfg))
    names, grid = domain_rows(cfg)
    cell = cfg.size * cfg.scale
    label_w, pad = 210, 2
    width = label_w + cfg.frames * (cell + pad)
    height = len(names) * (cell + pad)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, name in enumerate(names):
        y = r * (cell + pad)
        spec = fam.domains.get(name)
        split = fam.split_of(name) if spec is not None else "custom"
        # a shift domain's `level` orders every level (sources too); a room's difficulty does
        level = getattr(spec, "level", spec.difficulty) if spec is not None else "?"
        draw.text((4, y + cell // 2 - 12), f"{name}\n{split}, level {level}", fill=(0, 0, 0))
        for c in range(cfg.frames):
            tile = Image.fromarray(grid[r, c]).resize((cell, cell), Image.Resampling.NEAREST)
            canvas.paste(tile, (label_w + c * (cell + pad), y))
    out = Path(cfg.out)
    atomic_save(out, lambda tmp: canvas.save(tmp, format="PNG"))
    logger.info("wrote %s (%d domains x %d frames)", out, len(names), cfg.frames)
    return {"out": str(out), "env": fam.name, "domains": names, "frames": cfg.frames}


SHOW = Command(
    words=("envs", "show"),
    config=EnvsShowConfig,
    run=run_show,
    help="render a grid of frames, one row per domain",
    positional=("env",),
    out_is_file=True,
)
