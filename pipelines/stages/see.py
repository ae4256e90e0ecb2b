"""Stage 1, `darla see`: collect frames from the SOURCE domains, train a zoo model, write its folder.

    darla see --env SeekAvoid --model beta_vae_dae --preset quick --out runs/exp1

writes `runs/exp1/see/beta_vae_dae/` (model.pt, config.yaml, metrics.json, recon.png,
traversals.png, tb/, DONE.json). A finished folder with the same config is skipped; an
interrupted one resumes from its last checkpoint.

A model built on another trained model declares it (`VisionModel.upstream`: beta_vae_dae's DAE,
iin's and scan's base). This stage reads that model from its see folder (a zoo model's name means
the experiment's own `<out>/see/<name>`, which the planner trains first: `darla see` and `darla run`
both plan it), checks it offers the interface, hands it to the model and records it in the artifact.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from darla.artifacts import SeeArtifact, StageDir, atomic_write_json, file_hash
from darla.config import from_dict, merge, to_dict
from darla.errors import ArtifactError, ConfigError
from darla.runtime import resolve_device, setup_torch
from darla.seeding import derive_seed, make_rng, seed_everything
from darla.vision import MODELS, build, load
from darla.vision.base import Upstream, VisionModel
from darla.vision.figures import recon_grid, save_png, traversal_grid
from darla.vision.trainer import TrainConfig, Trainer, evaluate

logger = logging.getLogger(__name__)


def _model_train_default() -> dict[str, dict[str, Any]]:
    return {"dae": {"lr": 1e-3, "steps": 5000}}  # DARLA trains its DAE with Adam at 1e-3


@dataclass
class SeeSettings:
    """How vision models are trained (shared by every model of a run: `darla run --see.frames ...`)."""

    size: int = 64
    """Square frame size in pixels."""
    frames: int = 20_000
    """Frames to collect from the source domains (cached and reused)."""
    policy: str = "mixed"
    """Frame collection policy of the env family (`random`, `mixed`: task-directed and random
    episodes, so frames show what matters; a family may offer more)."""
    domains: tuple[str, ...] = ()
    """Source domains to collect from; empty = the env's whole source split. Written resolved."""
    params: dict[str, Any] = field(default_factory=dict)
    """Method hyperparameters of the model(s) you name (fields of the model's config, e.g. beta=4
    latent_dim=32). A model trained only because another is built on it (beta_vae_dae's dae) takes
    its `model_params` entry instead."""
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-method defaults ({model name: {field: value}}); `params` override them. Only the entry
    of the model being trained is used (and written, merged into `params`)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation settings."""
    model_train: dict[str, dict[str, Any]] = field(default_factory=_model_train_default)
    """Per-method overrides of `train` ({model name: {field: value}}; DARLA's DAE: lr 1e-3)."""
    workers: int = 2
    """Processes collecting frames."""
    cache_dir: Path | None = None
    """Frame cache folder (default: darla.envs' cache, $DARLA_CACHE)."""
    device: str = "auto"
    """Torch device: auto, cpu, cuda."""
    threads: int = 0
    """Torch threads (0 = all cores)."""

    hash_exclude: ClassVar[tuple[str, ...]] = ("workers", "cache_dir", "device", "threads")

    def validate(self) -> None:
        for name, values in {**self.model_params, **self.model_train}.items():
            MODELS.get(name)  # a typo is an error; entries of models not trained are unused
            if not isinstance(values, dict):
                raise ConfigError(
                    f"model_params/model_train.{name} must be a mapping of fields, got {values!r}"
                )
        for name, values in self.model_params.items():
            from_dict(MODELS.get(name).config_cls, values, where=f"model_params.{name}")
        for name, values in self.model_train.items():
            from_dict(TrainConfig, merge(to_dict(self.train), values), where=f"model_train.{name}")
        if self.size < 1 or self.frames < 2:
            raise ConfigError(f"need size >= 1 and frames >= 2, got size={self.size}, frames={self.frames}")


@dataclass
class SeeConfig(SeeSettings):
    """Learn to see: train a vision model on frames from the env's source domains."""

    env: str = "SeekAvoid"
    """Env family whose source domains provide the frames."""
    model: str = "beta_vae_dae"
    """Zoo method (`darla see --help` lists them in the error of a wrong name; plug-ins included)."""
    out: Path = Path("runs/default")
    """Experiment folder; the model goes to <out>/see/<name or model>/."""
    name: str = ""
    """Folder name under <out>/see/ (default: the model name); lets one experiment hold variants."""
    seed: int = 0
    """One seed for frames, initialisation, batches and sampling noise."""

    hash_exclude: ClassVar[tuple[str, ...]] = (*SeeSettings.hash_exclude, "out")

    def validate(self) -> None:
        super().validate()
        cls = MODELS.get(self.model)  # UnknownNameError with did-you-mean
        from_dict(cls.config_cls, self.effective_params(), where="params")
        if self.name and ("/" in self.name or self.name in (".", "..")):
            raise ConfigError(f"name must be a plain folder name, got {self.name!r}")

    def effective_params(self) -> dict[str, Any]:
        return {**self.model_params.get(self.model, {}), **self.params}

    def effective_train(self) -> TrainConfig:
        return from_dict(TrainConfig, merge(to_dict(self.train), self.model_train.get(self.model, {})))

    @property
    def folder(self) -> Path:
        return Path(self.out) / "see" / (self.name or self.model)

    @classmethod
    def of(cls, settings: SeeSettings, **identity: Any) -> SeeConfig:
        """The config of one model: shared settings plus what names it (env, model, out, name, seed)."""
        return cls(
            **{**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}, **identity}
        )


# ----------------------------------------------------------------------------- what a model is built on
def upstream_ref(cfg: SeeConfig, req: Upstream) -> str:
    """What the config names for one upstream: the field's value, else the declared default."""
    return str(cfg.effective_params().get(req.field) or req.default)


def upstream_folder(cfg: SeeConfig, req: Upstream) -> Path:
    """The see folder an upstream reference means: a zoo model's name is this experiment's own
    `<out>/see/<name>` (trained first by the planner), anything else a see folder (or its model.pt)."""
    ref = upstream_ref(cfg, req)
    if not ref:
        raise ConfigError(
            f"{cfg.model} is built on {req.interface}: set --params {req.field}=<see folder or zoo model>"
        )
    if ref in MODELS:
        return Path(cfg.out) / "see" / ref
    path = Path(ref)
    return path.parent if path.suffix == ".pt" else path


def upstream_models(cfg: SeeConfig, device: str) -> dict[str, tuple[SeeArtifact, VisionModel]]:
    """Every trained model `cfg`'s model is built on, read from its finished artifact and checked
    against the interface its model class declares."""
    found: dict[str, tuple[SeeArtifact, VisionModel]] = {}
    for req in MODELS.get(cfg.model).upstream:
        folder = upstream_folder(cfg, req)
        try:
            artifact = SeeArtifact.read(folder)
        except ArtifactError as exc:
            raise ArtifactError(
                f"{cfg.model} is built on {req.interface} ({req.field}: {folder}), which is not ready: {exc}"
            ) from None
        model = load(artifact.checkpoint, device=device)
        if not req.accepts(model):
            raise ConfigError(
                f"{cfg.model}'s {req.field} must be {req.interface}; {folder} holds a {model.name!r}"
            )
        if artifact.env and artifact.env != cfg.env:
            raise ConfigError(
                f"{cfg.model}'s {req.field} {folder} was trained on {artifact.env!r}, not {cfg.env!r}"
            )
        found[req.field] = (artifact, model)
    return found


# ----------------------------------------------------------------------------- resolution
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


def typed_params(cls: type, params: dict[str, Any], where: str) -> dict[str, Any]:
    """`params` with each value in its field's type, so `beta=4` (CLI) and `beta: 4.0` (YAML) make
    the same stage hash instead of retraining a finished model."""
    typed = to_dict(from_dict(cls, params, where=where))
    return {k: typed[k] for k in params}


def resolve(cfg: SeeConfig) -> SeeConfig:
    """The config as the stage records it: source domains filled in, the model's own params and
    training settings merged in (the per-model tables emptied)."""
    cfg.validate()
    params = typed_params(MODELS.get(cfg.model).config_cls, cfg.effective_params(), "params")
    cfg = dataclasses.replace(
        cfg, params=params, model_params={}, train=cfg.effective_train(), model_train={}
    )
    return resolve_domains(cfg)


def see_stage(cfg: SeeConfig, upstream: dict[str, tuple[SeeArtifact, VisionModel]] | None = None) -> StageDir:
    """The see folder of a resolved config: its hash covers the config and the content of every model
    it is built on (retraining one re-runs this); their folders are recorded, not hashed."""
    files = {name: artifact.checkpoint for name, (artifact, _) in (upstream or {}).items()}
    inputs = {"upstream_hash": {name: file_hash(path) for name, path in files.items()}} if files else {}
    notes = {"upstream": {name: {"path": str(path.parent)} for name, path in files.items()}} if files else {}
    return StageDir(cfg.folder, cfg, inputs=inputs, notes=notes)


def is_see_done(cfg: SeeConfig) -> bool:
    """Whether `run_see(cfg)` would skip (done with this config and the same upstream models)."""
    cfg = resolve(cfg)
    try:
        upstream = upstream_models(cfg, "cpu")
    except (ArtifactError, ConfigError):
        return False
    return see_stage(cfg, upstream).is_done()


# ----------------------------------------------------------------------------- the stage
def run_see(cfg: SeeConfig) -> Path:
    """Train (or skip, or resume) one vision model; returns its see folder. What it is built on must
    be trained already (`darla see` and `darla run` plan it first)."""
    import darla.envs as envs

    cfg = resolve(cfg)
    setup_torch(cfg.threads)
    device = resolve_device(cfg.device)
    upstream = upstream_models(cfg, device)
    stage = see_stage(cfg, upstream)
    stage.lock()  # before any work: a folder another process writes is refused (or waited for) now
    if stage.is_done():
        logger.info("see: %s is done with the same config; skipping", stage.path)
        stage.unlock()
        return stage.path

    data = envs.collect_frames(
        cfg.env,
        list(cfg.domains),
        cfg.frames,
        seed=cfg.seed,
        size=cfg.size,
        policy=cfg.policy,
        workers=cfg.workers,
        cache_dir=cfg.cache_dir,
    )
    frames = data.frames
    stage.prepare()
    logger.info("see: training %s on %d frames of %s %s", cfg.model, len(frames), cfg.env, list(cfg.domains))

    seed_everything(derive_seed(cfg.seed, "init", cfg.model))
    paths = {name: str(artifact.path) for name, (artifact, _) in upstream.items()}
    model = build(cfg.model, image_shape=(cfg.size, cfg.size, 3), **{**cfg.params, **paths})
    model.on_source(cfg.env, tuple(cfg.domains))
    for name, (_, trained) in upstream.items():
        model.attach(name, trained)
    used = {
        name: {"path": str(a.checkpoint), "hash": stage.inputs["upstream_hash"][name]}
        for name, (a, _) in upstream.items()
    }
    extra = {
        "env": cfg.env,
        "domains": list(cfg.domains),
        "see_config": to_dict(cfg),
        "config_hash": stage.hash,
        "frames_path": str(getattr(data, "path", "")),
        "upstream": used,
    }
    trainer = Trainer(
        model,
        frames,
        cfg.train,
        seed=derive_seed(cfg.seed, "train", cfg.model),
        checkpoint=stage.path / "model.pt",
        resume_key=stage.hash,
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
        "upstream": used,
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


def see_summary(path: Path) -> dict[str, Any]:
    """The headline numbers of a finished see folder (what `darla see` prints)."""
    mfile = path / "metrics.json"
    metrics = json.loads(mfile.read_text()) if mfile.is_file() else {}
    keep = (
        "steps",
        "training_seconds",
        "images_per_s",
        "recon_mse",
        "recon_bce",
        "active_latents",
        "kl_total",
    )
    return {"see_dir": str(path), **{k: metrics[k] for k in keep if k in metrics}}


__all__ = ["SeeConfig", "SeeSettings", "TrainConfig", "is_see_done", "run_see", "see_summary"]
