"""`darla evaluate`: disentanglement metrics of a trained vision model on a ground-truth dataset.

    darla evaluate --see runs/exp1/see/beta_vae --dataset SeekAvoid --json
    darla evaluate --see runs/v/validate/beta_tcvae/s0 --dataset sprites --metrics mig factor_vae

The dataset is procedural dSprites (`sprites`) or an env family's own ground truth (room,
objects, colours, pose), so a backbone trained on SeekAvoid is scored on SeekAvoid's factors.
`score_see_dir` is the same computation for the see stage's metrics.json.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from darla.artifacts import StageDir, atomic_write_json, file_hash, model_folder_config, read_json
from darla.cli import Command
from darla.config import to_dict
from darla.errors import ArtifactError, ConfigError, UnknownNameError
from darla.registry import unknown_name_message
from darla.runtime import setup_torch
from darla.vision.checkpoint import checkpoint_path

logger = logging.getLogger(__name__)

SPRITES = "sprites"


class NoGroundTruthError(ConfigError):
    """The named dataset (an env family) has no ground-truth factors to score against."""


@dataclass
class EvaluateConfig:
    """Score a trained vision model with the disentanglement metrics (disentanglement_lib's defaults)."""

    see: Path
    """A see folder (or its model.pt, or a validate model folder) holding the trained model."""
    dataset: str = "auto"
    """'sprites', an env family name (SeekAvoid, FetchObject), or 'auto': the env the model was trained on."""
    metrics: tuple[str, ...] = ()
    """Metrics to compute (beta_vae, factor_vae, mig, sap, dci, modularity); empty = all."""
    seed: int = 0
    """Seed of every sample the metrics draw."""
    point_scale: float = 1.0
    """Multiplies every metric's point counts (1 = disentanglement_lib's; 0.1 for a quick look)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Per-metric overrides, e.g. mig='{num_bins: 10}' or dci='{num_train: 2000}'."""
    batch_size: int = 256
    """Images rendered and encoded at once."""
    device: str = "auto"
    """Torch device: auto, cpu, cuda."""
    threads: int = 0
    """Torch CPU threads (0 = all cores)."""

    hash_exclude: ClassVar[tuple[str, ...]] = ("device", "threads", "batch_size")

    def validate(self) -> None:
        from darla.vision.metrics import metric_names, resolve_params

        # unknown metric names, parameter keys or values fail here, before a model is loaded
        resolve_params(self.metrics or metric_names(), self.params, self.point_scale)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


def trained_env(path: str | Path) -> str | None:
    """The env (family) a model was trained on, from its folder's recorded config; None if unknown."""
    data = model_folder_config(path) or {}
    env = data.get("env")
    if isinstance(env, str) and env:
        return env
    if data.get("dataset") == SPRITES:
        return SPRITES
    return None


def dataset_names() -> list[str]:
    import darla.envs

    return [SPRITES, *darla.envs.FAMILIES.names()]


def make_dataset(name: str, size: int = 64) -> Any:
    """A ground-truth dataset by name: procedural dSprites or an env family's ground truth."""
    if name == SPRITES:
        from darla.envs.sprites import Sprites

        return Sprites()
    import darla.envs

    try:
        family = darla.envs.get_family(name)
    except UnknownNameError:
        raise UnknownNameError(unknown_name_message("dataset", name, dataset_names())) from None
    try:
        return family.ground_truth(size)
    except NotImplementedError as exc:
        raise NoGroundTruthError(
            f"env family {name!r} has no ground-truth factors ({exc}); "
            f"score the model on another dataset: {', '.join(dataset_names())}"
        ) from None


def resolve_dataset_name(dataset: str, see: str | Path) -> str:
    if dataset != "auto":
        return dataset
    env = trained_env(see)
    if env is None:
        raise ConfigError(
            f"cannot tell which env {see} was trained on (its folder records no env); "
            f"pass --dataset, one of: {', '.join(dataset_names())}"
        )
    return env


def model_encoder(model: Any, shape: tuple[int, int, int]) -> Any:
    """An `encode` for the metrics: adapts dataset images to the model's input, returns numpy."""
    from darla.vision.metrics import adapt_observations

    def encode(obs: np.ndarray) -> np.ndarray:
        return model.encode(adapt_observations(obs, shape)).cpu().numpy()

    return encode


def score_model(
    model: Any,
    dataset_name: str,
    *,
    metrics: tuple[str, ...] | list[str] | None = None,
    seed: int = 0,
    point_scale: float = 1.0,
    params: dict[str, Any] | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Metrics of a loaded VisionModel on the named dataset (sizes matched to the model)."""
    from darla.vision.metrics import evaluate

    shape = tuple(model.image_shape)
    dataset = make_dataset(dataset_name, size=int(shape[0]))
    logger.info("scoring %s on %s %s", model.name, dataset_name, tuple(dataset.factor_names))
    return evaluate(
        model_encoder(model, shape),
        dataset,
        metrics=list(metrics) if metrics else None,
        seed=seed,
        params=params,
        point_scale=point_scale,
        batch_size=batch_size,
    )


def score_see_dir(
    see_dir: str | Path,
    *,
    dataset: str = "auto",
    metrics: tuple[str, ...] | list[str] | None = None,
    seed: int = 0,
    point_scale: float = 0.1,
    device: str = "auto",
) -> dict[str, float]:
    """Disentanglement scores of a see folder's model, for its metrics.json.

    Returns {} (and logs why) when the env has no ground truth. `point_scale` defaults to 0.1
    (1,000 training points per metric) because env frames are rendered by MiniWorld; use 1.0
    for disentanglement_lib's full counts.
    """
    from darla.vision import load

    name = resolve_dataset_name(dataset, see_dir)
    model = load(see_dir, device=device)
    try:
        return score_model(model, name, metrics=metrics, seed=seed, point_scale=point_scale)
    except NoGroundTruthError as exc:
        logger.warning("no disentanglement scores for %s: %s", see_dir, exc)
        return {}


def run(cfg: EvaluateConfig) -> dict[str, Any]:
    from darla.vision import load, see_folder

    setup_torch(cfg.threads)
    if not see_folder(cfg.see).exists():
        raise ArtifactError(f"model not found: {cfg.see}")
    name = resolve_dataset_name(cfg.dataset, cfg.see)
    model = load(cfg.see, device=cfg.device)
    start = time.perf_counter()
    scores = score_model(
        model,
        name,
        metrics=cfg.metrics,
        seed=cfg.seed,
        point_scale=cfg.point_scale,
        params=cfg.params,
        batch_size=cfg.batch_size,
    )
    return {
        "see": str(cfg.see),
        "model": model.name,
        "dataset": name,
        "seed": cfg.seed,
        "point_scale": cfg.point_scale,
        "seconds": round(time.perf_counter() - start, 1),
        "scores": scores,
    }


SCORES_FILE = "scores.json"


def metrics_dir(out: Path, model: str) -> Path:
    """Where a run or sweep keeps a vision model's disentanglement scores: <run>/metrics/<model>/."""
    return Path(out) / "metrics" / model


def metrics_stage(cfg: EvaluateConfig, out: Path) -> StageDir:
    """The scores as a stage folder of a run: named by the model's weights (by content), so a
    retrained see stage makes them stale."""
    settings = {k: v for k, v in to_dict(cfg).items() if k not in ("device", "threads", "batch_size", "see")}
    return StageDir(out, {"evaluate": settings}, inputs={"model_hash": file_hash(checkpoint_path(cfg.see))})


@dataclass
class MetricsStage:
    """A run's metrics task: score `config.see` and keep the result in `out`."""

    config: EvaluateConfig
    out: Path


def run_metrics_stage(task: MetricsStage) -> Path:
    """Score the model unless its folder is done with these settings and these weights."""
    stage = metrics_stage(task.config, task.out)
    stage.lock()
    if not stage.is_done():
        stage.prepare()
        atomic_write_json(stage.file(SCORES_FILE), run(task.config))
        stage.mark_done()
    return stage.path


def is_metrics_done(task: MetricsStage) -> bool:
    try:
        return metrics_stage(task.config, task.out).is_done()
    except (ArtifactError, OSError):
        return False


def read_scores(folder: Path) -> dict[str, float] | None:
    """A finished metrics folder's scores (None when there is none)."""
    path = Path(folder) / SCORES_FILE
    if not (Path(folder) / "DONE.json").is_file() or not path.is_file():
        return None
    data = read_json(path)
    return {k: float(v) for k, v in data.get("scores", {}).items()}


def render(result: dict[str, Any]) -> str:
    from darla.vision.metrics import primary_scores

    lines = [f"{result['model']} on {result['dataset']} (seed {result['seed']}, {result['seconds']} s)"]
    for key, value in primary_scores(result["scores"]).items():
        lines.append(f"  {key:<22} {value:.3f}")
    details = {k: v for k, v in result["scores"].items() if k not in primary_scores(result["scores"])}
    if details:
        lines.append("  details: " + ", ".join(f"{k}={v:.3f}" for k, v in details.items()))
    return "\n".join(lines)


COMMAND = Command(
    words=("evaluate",),
    config=EvaluateConfig,
    run=run,
    help="disentanglement metrics of a trained vision model",
    render=render,
)
