"""The act stage's inputs: a policy's config resolved against the artifacts it reads (the vision
model's checkpoint and content hash, an expert's policy), its folder and its stage identity."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from darla.agents.agent import policy_feature_map, policy_features
from darla.agents.config import ActConfig, PolicyInputs
from darla.agents.factory import resolve_hyperparams
from darla.agents.modes import MODES
from darla.agents.readouts import readout_name
from darla.artifacts import ActArtifact, SeeArtifact, StageDir, check_zero_shot, file_hash
from darla.errors import ArtifactError, ConfigError
from darla.runtime import resolve_device

if TYPE_CHECKING:
    from darla.envs.family import EnvFamily
    from darla.vision import VisionModel


def method_name(cfg: ActConfig) -> str:
    """The folder name under act/: the see folder's name ('@conv1+cnn' added for a frozen policy
    reading an encoder layer), '-finetune' added, or 'pixels'."""
    if cfg.name:
        return cfg.name
    if cfg.mode == "pixels" or cfg.see is None:
        return "pixels"
    base = Path(cfg.see).name
    if cfg.mode != "frozen":
        return f"{base}-{cfg.mode}"
    readout = readout_name(cfg.feature_layer, cfg.feature_head)
    return f"{base}@{readout}" if readout else base


def act_dir(cfg: ActConfig) -> Path:
    """`<out>/act/<vision or 'pixels'>/<algo>/s<seed>/`."""
    return Path(cfg.out) / "act" / method_name(cfg) / cfg.algo / f"s{cfg.seed}"


def resolve_act_config(cfg: ActConfig) -> tuple[ActConfig, PolicyInputs, VisionModel | None]:
    """Fill in env, domains, size and the full hyperparameters; resolve the vision model (checkpoint
    and content hash) and an expert's policy hash from their artifacts.

    Idempotent: resolving a resolved config gives it back (so its hash names the run).
    """
    from darla.envs import get_family

    mode = MODES.get(cfg.mode)
    if mode.needs_vision and cfg.see is None:
        raise ConfigError(f"mode {cfg.mode!r} needs a vision model: pass --see <see folder>")
    see = SeeArtifact.read(cfg.see) if cfg.see is not None else None
    env = cfg.env or (see.env if see is not None else None)
    if env is None:
        raise ConfigError("act needs an env family: pass --env (or --see, whose config names it)")
    if see is not None and cfg.env is not None and see.env != cfg.env:
        raise ConfigError(
            f"env {cfg.env!r} differs from the env the vision model was trained on ({see.env!r})"
        )
    family = get_family(env)
    domains = tuple(cfg.domains) or (see.domains if see is not None else ()) or tuple(family.splits["source"])
    for d in domains:
        family.domain(d)  # a clear error for an unknown domain
    vision: VisionModel | None = None
    inputs = PolicyInputs()
    size = cfg.size
    updates: dict[str, Any] = {}
    if mode.needs_vision:
        import darla.vision

        assert see is not None
        if not see.checkpoint.is_file():
            raise ArtifactError(f"see folder {see.path} holds no vision checkpoint ({see.checkpoint})")
        vision = darla.vision.load(see.checkpoint, device=resolve_device(cfg.device))
        h, w, _ = vision.image_shape
        if h != w:
            raise ConfigError(f"the vision model reads {h}x{w} frames; act needs square frames")
        if size is not None and size != h:
            raise ConfigError(
                f"image size mismatch: the vision model in {cfg.see} was trained on {h}x{w} frames "
                f"but act was asked for size {size}; use --size {h} (or retrain see at size {size})"
            )
        size = h
        inputs = PolicyInputs(
            vision_model=type(vision).name,
            vision_checkpoint=str(see.checkpoint.resolve()),
            vision_hash=file_hash(see.checkpoint),
        )
    else:
        size = size or (see.size if see is not None else 64)
    if cfg.expert is not None:
        inputs = dataclasses.replace(inputs, expert_hash=_expert_hash(cfg, family, size))
    if not mode.frozen_features:
        # a preset's feature_norm is shared by every mode of a run; only frozen features take it
        defaults = ActConfig()
        updates.update(
            feature_norm=defaults.feature_norm,
            feature_norm_frames=defaults.feature_norm_frames,
            feature_layer=defaults.feature_layer,
            feature_head=defaults.feature_head,
        )
    elif vision is not None:
        # a clear error naming the model's layers, or saying the cnn head needs a conv layer
        policy_feature_map(cfg, policy_features(cfg, vision))
    head = updates.get("feature_head", cfg.feature_head)
    hparams = resolve_hyperparams(cfg.algo, family.name, cfg.mode, cfg.effective_hparams(cfg.algo), head)
    resolved = dataclasses.replace(
        cfg, env=family.name, domains=domains, size=size, hparams=hparams, algo_hparams={}, **updates
    )
    resolved.validate()
    return resolved, inputs, vision


def _expert_hash(cfg: ActConfig, family: EnvFamily, size: int) -> str:
    """Check an imitation expert (finished, same env and frame size, never saw a held-out domain)
    and return its policy's content hash."""
    assert cfg.expert is not None
    expert = ActArtifact.read(cfg.expert)
    if not expert.policy_file.is_file():
        raise ArtifactError(f"expert {expert.path} holds no {expert.policy_file.name}")
    if expert.env != family.name:
        raise ConfigError(
            f"the expert {expert.path} was trained on env {expert.env!r}, this policy is for {family.name!r}"
        )
    if expert.raw.get("size") is not None and expert.size != size:
        raise ConfigError(
            f"the expert {expert.path} reads {expert.size}x{expert.size} frames, this policy {size}x{size}: "
            f"pass --size {expert.size} (or clone an expert trained at size {size})"
        )
    check_zero_shot(family.name, family.splits, expert)
    return file_hash(expert.policy_file)


def act_stage(cfg: ActConfig, inputs: PolicyInputs) -> StageDir:
    """The act folder of a resolved config: its hash covers the config and the vision model's (and an
    expert's) content hash; the checkpoint's path is recorded, not hashed."""
    return StageDir(act_dir(cfg), cfg, inputs=inputs.identity(), notes=inputs.notes())


def is_act_done(cfg: ActConfig) -> bool:
    """Whether `run_act(cfg)` would skip (done with this config and these inputs)."""
    resolved, inputs, _ = resolve_act_config(cfg)
    return act_stage(resolved, inputs).is_done()
