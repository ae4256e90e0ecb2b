"""Stage 1, `darla see`: collect frames from the SOURCE domains, train a zoo model, write its folder.

    darla see --env SeekAvoid --model beta_vae_dae --preset quick --out runs/exp1

writes `runs/exp1/see/beta_vae_dae/` (model.pt, config.yaml, metrics.json, recon.png,
traversals.png, tb/, DONE.json). A finished folder with the same config is skipped; an
interrupted one resumes from its last checkpoint. `beta_vae_dae` first trains (or reuses) the
DAE that defines its feature space, in `<out>/see/dae/`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from darla.artifacts import StageDir, atomic_write_json, file_hash
from darla.cli import Command
from darla.config import config_hash, from_dict, to_dict
from darla.errors import ConfigError, DarlaError
from darla.runtime import resolve_device, setup_torch
from darla.seeding import derive_seed, make_rng, seed_everything
from darla.vision import MODELS, build, checkpoint_path, load
from darla.vision.figures import recon_grid, save_png, traversal_grid
from darla.vision.trainer import TrainConfig, Trainer, evaluate

logger = logging.getLogger(__name__)


def _dae_train_default() -> TrainConfig:
    return TrainConfig(lr=1e-3, steps=5000)


@dataclass
class SeeConfig:
    """Learn to see: train a vision model on frames from the env's source domains."""

    env: str = "SeekAvoid"
    """Env family whose source domains provide the frames."""
    model: str = "beta_vae_dae"
    """Zoo method (ae, vae, beta_vae, beta_vae_capacity, beta_tcvae, factor_vae, dae, beta_vae_dae)."""
    out: Path = Path("runs/default")
    """Experiment folder; the model goes to <out>/see/<name or model>/."""
    name: str = ""
    """Folder name under <out>/see/ (default: the model name); lets one experiment hold variants."""
    seed: int = 0
    """One seed for frames, initialisation, batches and sampling noise."""
    size: int = 64
    """Square frame size in pixels."""
    frames: int = 20_000
    """Frames to collect from the source domains (cached and reused)."""
    policy: str = "mixed"
    """Frame collection policy (see darla.envs.collect_frames; 'mixed' shows objects often)."""
    domains: tuple[str, ...] = ()
    """Source domains to collect from; empty = the env's whole source split. Written resolved."""
    params: dict[str, Any] = field(default_factory=dict)
    """Method hyperparameters (fields of the model's config, e.g. beta=4 latent_dim=32)."""
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-method defaults for presets ({model name: {field: value}}); `params` override them.
    Only the entry of the chosen model is used (and written, merged into `params`)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation settings."""
    dae_path: str | None = None
    """beta_vae_dae only: reuse this trained DAE (see folder or model.pt) instead of training one."""
    dae_params: dict[str, Any] = field(default_factory=dict)
    """beta_vae_dae only: hyperparameters of the DAE trained first (fields of the dae config)."""
    dae_train: TrainConfig = field(default_factory=_dae_train_default)
    """beta_vae_dae only: optimisation settings of the DAE (DARLA: Adam 1e-3)."""
    upstream_hash: str | None = None
    """Filled in by the stage: content hash of the checkpoint this model builds on (`dae_path`, or the
    `base` of iin/scan), so that retraining that model re-runs this one."""
    workers: int = 2
    """Processes collecting frames."""
    cache_dir: Path | None = None
    """Frame cache folder (default: darla.envs' cache, $DARLA_CACHE)."""
    device: str = "auto"
    """Torch device: auto, cpu, cuda."""
    threads: int = 0
    """Torch threads (0 = all cores)."""

    hash_exclude: ClassVar[tuple[str, ...]] = ("out", "workers", "cache_dir", "device", "threads")

    def validate(self) -> None:
        cls = MODELS.get(self.model)  # UnknownNameError with did-you-mean
        for name, values in self.model_params.items():
            if not isinstance(values, dict):
                raise ConfigError(f"model_params.{name} must be a mapping of fields, got {values!r}")
            from_dict(MODELS.get(name).config_cls, values, where=f"model_params.{name}")
        from_dict(cls.config_cls, self.effective_params(), where="params")
        if self.model == "beta_vae_dae":
            from darla.vision.models.dae import DAEConfig

            from_dict(DAEConfig, self.dae_params, where="dae_params")
        if self.size < 1 or self.frames < 2:
            raise ConfigError(f"need size >= 1 and frames >= 2, got size={self.size}, frames={self.frames}")
        if self.name and ("/" in self.name or self.name in (".", "..")):
            raise ConfigError(f"name must be a plain folder name, got {self.name!r}")

    def effective_params(self) -> dict[str, Any]:
        return {**self.model_params.get(self.model, {}), **self.params}

    @property
    def folder(self) -> Path:
        return Path(self.out) / "see" / (self.name or self.model)


def resolve_domains(cfg: SeeConfig) -> SeeConfig:
    """Fill in the source domains; refuse target/ood domains (they must stay unseen)."""
    import darla.envs as envs

    family = envs.get_family(cfg.env)
    source = tuple(family.splits["source"])
    if not cfg.domains:
        return dataclasses.replace(cfg, domains=source)
    for d in cfg.domains:
        family.domain(d)  # unknown names -> clear error from the env family
        if d not in source:
            raise ConfigError(
                f"domain {d!r} is in the {family.split_of(d)!r} split of {cfg.env}; the see stage "
                f"trains on source domains only: {', '.join(source)}"
            )
    return cfg


def _collect(cfg: SeeConfig) -> Any:
    import darla.envs as envs

    collect = getattr(envs, "collect_frames", None)
    if collect is None:
        raise DarlaError("darla.envs.collect_frames is not available in this version")
    return collect(
        cfg.env,
        list(cfg.domains),
        cfg.frames,
        seed=cfg.seed,
        size=cfg.size,
        policy=cfg.policy,
        workers=cfg.workers,
        cache_dir=cfg.cache_dir,
    )


def _dae_config(cfg: SeeConfig) -> SeeConfig:
    return dataclasses.replace(
        cfg,
        model="dae",
        name="dae",
        params=dict(cfg.dae_params),
        model_params={},
        train=cfg.dae_train,
        dae_path=None,
    )


def upstream_refs(params: dict[str, Any], dae_path: Any) -> list[str]:
    """What a see config records as the trained models it builds on (see folders or checkpoints):
    a reused DAE (`dae_path`) and the frozen `base` of iin/scan. The stage hashes them; transfer
    checks them for target leaks."""
    return [str(ref) for ref in (dae_path, params.get("base")) if ref]


def resolve(cfg: SeeConfig) -> SeeConfig:
    """The config as the stage records it: source domains filled in, per-model params merged, and
    the content hash of the models it builds on."""
    cfg.validate()
    found = [
        p for p in map(checkpoint_path, upstream_refs(cfg.effective_params(), cfg.dae_path)) if p.is_file()
    ]
    upstream_hash = "+".join(file_hash(p) for p in found) or None
    params = typed_params(MODELS.get(cfg.model).config_cls, cfg.effective_params(), "params")
    dae_params = cfg.dae_params
    if cfg.model == "beta_vae_dae":
        from darla.vision.models.dae import DAEConfig

        dae_params = typed_params(DAEConfig, dae_params, "dae_params")
    cfg = dataclasses.replace(
        cfg, params=params, model_params={}, dae_params=dae_params, upstream_hash=upstream_hash
    )
    return resolve_domains(cfg)


def typed_params(cls: type, params: dict[str, Any], where: str) -> dict[str, Any]:
    """`params` with each value in its field's type, so `beta=4` (CLI) and `beta: 4.0` (YAML) make
    the same stage hash instead of retraining a finished model."""
    typed = to_dict(from_dict(cls, params, where=where))
    return {k: typed[k] for k in params}


def run_see(cfg: SeeConfig) -> Path:
    """Train (or skip, or resume) the see stage; returns the see folder."""
    cfg = resolve(cfg)
    stage = StageDir(cfg.folder, cfg)
    stage.lock()  # before any work: a folder another process writes is refused (or waited for) now
    if stage.is_done():
        logger.info("see: %s is done with the same config; skipping", stage.path)
        stage.unlock()
        return stage.path
    setup_torch(cfg.threads)
    device = resolve_device(cfg.device)

    dae = None
    dae_info: dict[str, Any] = {}
    if cfg.model == "beta_vae_dae":
        dae_dir = Path(cfg.dae_path) if cfg.dae_path else run_see(_dae_config(cfg))
        dae = load(dae_dir, device=device)
        dae_info = {"dae": str(checkpoint_path(dae_dir)), "dae_hash": file_hash(checkpoint_path(dae_dir))}

    data = _collect(cfg)
    frames = data.frames
    stage.prepare()
    logger.info("see: training %s on %d frames of %s %s", cfg.model, len(frames), cfg.env, list(cfg.domains))

    seed_everything(derive_seed(cfg.seed, "init", cfg.model))
    model = build(cfg.model, image_shape=(cfg.size, cfg.size, 3), **cfg.params)
    model.on_source(cfg.env, tuple(cfg.domains))
    if dae is not None:
        model.attach_dae(dae)
    extra = {
        "env": cfg.env,
        "domains": list(cfg.domains),
        "see_config": to_dict(cfg),
        "config_hash": stage.hash,
        "frames_path": str(getattr(data, "path", "")),
        **dae_info,
    }
    trainer = Trainer(
        model,
        frames,
        cfg.train,
        seed=derive_seed(cfg.seed, "train", cfg.model),
        checkpoint=checkpoint_path(stage.path),
        resume_key=config_hash(cfg),
        tb_dir=stage.path / "tb",
        extra=extra,
        device=device,
        threads=cfg.threads,
        desc=cfg.name or cfg.model,
    )
    result = trainer.fit()

    held = trainer.holdout_idx if len(trainer.holdout_idx) else trainer.train_idx[:256]
    held_frames = np.asarray(frames[held])
    metrics: dict[str, Any] = {
        "model": cfg.model,
        "env": cfg.env,
        "domains": list(cfg.domains),
        "frames": len(frames),
        "steps": result.steps,
        "training_seconds": round(result.seconds, 2),
        "images_per_s": round(result.images_per_s, 1),
        "resumed_from_step": result.resumed_from,
        "final_train_terms": result.terms,
        **evaluate(model, held_frames),
        **dae_info,
    }
    atomic_write_json(stage.file("metrics.json"), metrics)
    _figures(model, held_frames, stage.path, cfg.seed)
    stage.mark_done(steps=result.steps)
    logger.info(
        "see: done in %.0fs (%.0f img/s); held-out recon_mse %.1f, active latents %s",
        result.seconds,
        result.images_per_s,
        metrics.get("recon_mse", float("nan")),
        metrics.get("active_latents"),
    )
    return stage.path


def _figures(model: Any, held: np.ndarray, folder: Path, seed: int) -> None:
    rng = make_rng(seed, "figures")
    pick = np.sort(rng.choice(len(held), size=min(16, len(held)), replace=False))
    save_png(folder / "recon.png", recon_grid(model, held[pick]))
    seeds = held[pick[:3]]
    save_png(folder / "traversals.png", traversal_grid(model, seeds, reference=held[:1000]))


def _run(cfg: SeeConfig) -> dict[str, Any]:
    path = run_see(cfg)
    metrics = {}
    mfile = path / "metrics.json"
    if mfile.is_file():
        import json

        metrics = json.loads(mfile.read_text())
    keep = (
        "steps",
        "training_seconds",
        "images_per_s",
        "recon_mse",
        "recon_bce",
        "active_latents",
        "kl_total",
    )
    return {"see_dir": str(path), "model": cfg.model, **{k: metrics[k] for k in keep if k in metrics}}


COMMAND = Command(
    words=("see",),
    config=SeeConfig,
    run=_run,
    help="stage 1: collect source frames, train a vision model",
)

__all__ = ["COMMAND", "SeeConfig", "TrainConfig", "run_see"]
