"""`darla validate`: train zoo models on procedural dSprites and compare with the literature.

    darla validate --preset quick --out runs/v

Each model is trained with disentanglement_lib's settings (10 latents, batch 64, Adam 1e-4,
its conv architecture, Bernoulli likelihood) for a step budget that fits this machine, then
scored with the FactorVAE metric and MIG (disentanglement_lib's point counts). Results land in
`<out>/validate/`: one resumable folder per model and seed (`<model>/s<seed>/`: model.pt,
scores.json, traversals.png, mi.json, DONE.json) and a table (results.md / .csv / .json) of each
model's mean over seeds with a 95% bootstrap CI, next to the published values (themselves means
over seeds), plus a figure of latent traversals per model and one of each model's normalised
mutual information between latents and factors (`mi.png`: MIG reads the gap between the two
brightest cells of a column). With `score_every`, each model is
also scored along training (curve.json per folder, curves.png, a column of the table).
"""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from darla.artifacts import (
    StageDir,
    atomic_write_json,
    atomic_write_text,
    file_hash,
    read_json,
)
from darla.cli import Command
from darla.config import config_hash, dump_yaml, to_dict
from darla.errors import ConfigError
from darla.pipelines.analysis.rl_stats import stratified_bootstrap
from darla.pipelines.analysis.validate_figures import (
    save_curves,
    save_mi_figure,
    save_traversals,
    traversal_image,
)
from darla.runtime import setup_torch
from darla.seeding import derive_seed, seed_everything
from darla.vision.trainer import TrainConfig

logger = logging.getLogger(__name__)

DATASET = "sprites"

PUBLISHED: dict[str, dict[str, str]] = {
    # mean over seeds and hyperparameters on dSprites (see shared/REFERENCES.md); wide between papers
    "vae": {"factor_vae": "~0.63", "mig": "~0.10"},
    "beta_vae": {"factor_vae": "~0.63", "mig": "~0.21"},
    "beta_tcvae": {"factor_vae": "~0.62", "mig": "~0.45"},
    "factor_vae": {"factor_vae": "~0.82", "mig": "0.15-0.40"},
    "infogan": {"factor_vae": "~0.59", "mig": "~0.05"},
}

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    # one point of disentanglement_lib's sweeps (beta 1..16, beta-TCVAE beta 1..10, gamma 10..100)
    "beta_vae": {"beta": 4.0},
    "beta_tcvae": {"beta": 6.0},
    "factor_vae": {"gamma": 35.0},
    # MIG scores each factor's best unit: one unit per factor (the paper's pose units), not a block
    # and the paper's one-factor batches only: the training frames are the same sprites
    "dc_ign": {"units_per_factor": 1, "frames_ratio": 0.0},
}


def _dislib_train() -> TrainConfig:
    return TrainConfig(steps=300_000, batch_size=64, lr=1e-4)


@dataclass
class ValidateConfig:
    """Train zoo models on procedural dSprites; table of FactorVAE score and MIG vs the literature."""

    out: Path = Path("runs/default")
    """Run folder; results go to <out>/validate/."""
    models: tuple[str, ...] = ("vae", "beta_vae", "beta_tcvae", "factor_vae")
    """Zoo models to train (any generative model of darla.vision.MODELS)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Per-model hyperparameters over the defaults, e.g. beta_vae='{beta: 8}'."""
    latent_dim: int = 10
    """Latent units (disentanglement_lib: 10)."""
    frames: int = 0
    """Training images: 0 = all 737,280 factor combinations, else a seeded random subset."""
    train: TrainConfig = field(default_factory=_dislib_train)
    """Optimisation (disentanglement_lib: batch 64, Adam 1e-4, 300k steps)."""
    metrics: tuple[str, ...] = ("factor_vae", "mig")
    """Metrics in the table (any of darla.vision.metrics)."""
    point_scale: float = 1.0
    """Multiplies the metrics' point counts (1 = disentanglement_lib's)."""
    metric_params: dict[str, Any] = field(default_factory=dict)
    """Per-metric overrides, e.g. mig='{num_train: 10000}' (taken as given, not scaled)."""
    score_every: int = 0
    """Also score the model every N training steps (0: only at the end; a multiple of
    train.checkpoint_every): the curve shows whether a metric is still rising when training stops."""
    seeds: tuple[int, ...] = (0,)
    """Seeds (each fixes data order, initialisation and the metrics' samples): every model is
    trained once per seed, and the table and ordering check use means over seeds."""
    seed_models: tuple[str, ...] = ()
    """Models trained at every seed (empty: all); the others train at the first seed only, to
    fit a budget (the ordering check needs seeds for vae, beta_tcvae and factor_vae)."""
    device: str = "auto"
    """Torch device: auto, cpu, cuda."""
    threads: int = 0
    """Torch CPU threads (0 = all cores)."""

    hash_exclude: ClassVar[tuple[str, ...]] = ("out", "device", "threads")

    def validate(self) -> None:
        from darla.vision import MODELS
        from darla.vision.metrics import METRICS

        if not self.models:
            raise ConfigError(f"no model to validate. Valid choices: {', '.join(MODELS.names())}")
        for name in self.models:
            cls = MODELS.get(name)
            if not cls.generative:
                raise ConfigError(f"model {name!r} has no decoder to train on sprites alone")
        for name in self.params:
            MODELS.get(name)  # a typo is an error; params of a model not selected are unused (presets)
            if not isinstance(self.params[name], dict):
                raise ConfigError(
                    f"params.{name} must be a mapping of hyperparameters, got {self.params[name]!r}"
                )
        for name in self.metrics:
            METRICS.get(name)
        if not self.seeds:
            raise ConfigError("seeds is empty: give at least one seed, e.g. --seeds 0")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct, got {list(self.seeds)}")
        for name in self.seed_models:
            MODELS.get(name)  # a typo is an error; a model not selected is unused (presets), like params
        from darla.vision.metrics import resolve_params

        resolve_params(self.metrics, self.metric_params, self.point_scale)
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.frames < 0:
            raise ConfigError(f"frames must be >= 0 (0 = all combinations), got {self.frames}")
        if self.point_scale <= 0:
            raise ConfigError(f"point_scale must be > 0, got {self.point_scale}")
        every = self.train.checkpoint_every
        if self.score_every < 0 or (self.score_every and self.score_every % every):
            raise ConfigError(
                f"score_every must be 0 or a multiple of train.checkpoint_every ({every}), got {self.score_every}"
            )


@dataclass
class ModelRun:
    """What decides one model's result (written as that model folder's config.yaml)."""

    model: str
    params: dict[str, Any]
    dataset: str
    frames: int
    train: TrainConfig
    metrics: tuple[str, ...]
    point_scale: float
    metric_params: dict[str, Any]
    seed: int
    upstream_hash: str | None = None
    """content hash of the `base` checkpoint (iin): retraining the base re-runs this model"""

    @property
    def hash_exclude(self) -> tuple[str, ...]:
        # without a base the hash stays what it was before this field existed (finished runs reused)
        return () if self.upstream_hash else ("upstream_hash",)


def model_seeds(cfg: ValidateConfig, name: str) -> tuple[int, ...]:
    """The seeds `name` trains at: all of them, or the first only when seed_models leaves it out."""
    return cfg.seeds if not cfg.seed_models or name in cfg.seed_models else cfg.seeds[:1]


def run_dir(root: Path, name: str, seed: int) -> Path:
    return root / name / f"s{seed}"


def base_name(cfg: ValidateConfig, name: str) -> str | None:
    """The validated model this one is built on, when its `base` names one (iin: base=beta_vae)."""
    base = cfg.params.get(name, {}).get("base")
    return base if isinstance(base, str) and base in cfg.models and base != name else None


def model_params(cfg: ValidateConfig, name: str, root: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Defaults, then the user's params; a `base` naming a validated model becomes its folder at
    `seed` (or at the first seed, when the base model trains at that one only)."""
    params = {**DEFAULT_PARAMS.get(name, {}), **cfg.params.get(name, {}), "latent_dim": cfg.latent_dim}
    base = base_name(cfg, name)
    if base is not None and root is not None:
        base_seed = seed if seed in model_seeds(cfg, base) else cfg.seeds[0]
        params["base"] = str(run_dir(root, base, base_seed))
    return params


def sprite_frames(n: int, seed: int) -> np.ndarray:
    """All 737,280 dSprites images (n=0) or a seeded subset of n, uint8 (N, 64, 64, 1)."""
    from darla.envs.sprites import Sprites
    from darla.seeding import make_rng

    data = Sprites()
    total = data.num_combinations
    index = (
        np.arange(total) if n == 0 else np.sort(make_rng(seed, "validate", "frames").permutation(total)[:n])
    )
    frames = np.empty((len(index), *data.image_shape), dtype=np.uint8)
    for start in range(0, len(index), 65536):
        chunk = index[start : start + 65536]
        frames[start : start + len(chunk)] = data.sample_observations_from_factors(data.factors_of(chunk))
    return frames


def kl_ranking(model: Any, frames: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(512 seeded reference frames, latents ordered by KL on them, KL per latent): the row order
    of both the traversal grid and the MI table."""
    from darla.seeding import make_rng
    from darla.vision.figures import latent_order

    rng = make_rng(seed, "validate", "traversal")
    reference = frames[rng.choice(len(frames), size=min(512, len(frames)), replace=False)]
    order, score, _ = latent_order(model, reference)
    return reference, order, score


def train_and_score(
    cfg: ValidateConfig, name: str, seed: int, frames: np.ndarray, root: Path
) -> dict[str, Any]:
    """Train (or resume) one model at one seed, score it, write its folder; skipped when done."""
    from darla.envs.sprites import Sprites
    from darla.pipelines.analysis.evaluate import model_encoder
    from darla.vision import build
    from darla.vision.checkpoint import checkpoint_path
    from darla.vision.figures import save_png
    from darla.vision.metrics import evaluate
    from darla.vision.trainer import Trainer

    params = model_params(cfg, name, root, seed)
    upstream = checkpoint_path(params["base"]) if params.get("base") else None
    run = ModelRun(
        model=name,
        params=params,
        dataset=DATASET,
        frames=cfg.frames,
        train=cfg.train,
        metrics=cfg.metrics,
        point_scale=cfg.point_scale,
        metric_params=cfg.metric_params,
        seed=seed,
        upstream_hash=file_hash(upstream) if upstream is not None and upstream.is_file() else None,
    )
    stage = StageDir(run_dir(root, name, seed), run)
    if stage.is_done():
        logger.info("validate %s seed %d: done, reusing %s", name, seed, stage.path)
        return dict(read_json(stage.file("scores.json")))
    stage.prepare()
    # initial weights from the seed and the model's name alone: not from the process's random torch
    # seed (the first model) or from the models trained before it in this run (the others)
    seed_everything(derive_seed(seed, "init", name))
    model = build(name, image_shape=frames.shape[1:], **run.params)

    def score() -> dict[str, float]:
        return evaluate(
            model_encoder(model, model.image_shape),
            Sprites(),
            metrics=list(cfg.metrics),
            seed=seed,
            params=cfg.metric_params,
            point_scale=cfg.point_scale,
        )

    curve = Curve(stage.file("curve.json"), stage.hash)

    def on_checkpoint(step: int) -> None:
        if cfg.score_every and step % cfg.score_every == 0:
            curve.add(step, score())
            logger.info("validate %s seed %d step %d: %s", name, seed, step, curve.points[-1])

    trainer = Trainer(
        model,
        frames,
        cfg.train,
        seed=seed,
        checkpoint=stage.file("model.pt"),
        resume_key=config_hash(run),
        tb_dir=stage.file("tb"),
        extra={"dataset": DATASET},
        device=cfg.device,
        threads=cfg.threads,
        desc=f"validate {name} s{seed}",
        on_checkpoint=on_checkpoint,
    )
    result = trainer.fit()
    curve.keep_until(result.steps)
    start = time.perf_counter()
    scores = score()
    if cfg.score_every:
        curve.add(result.steps, scores)
    ranking = kl_ranking(model, frames, seed)
    grid, labels = traversal_image(model, ranking)
    save_png(stage.file("traversals.png"), np.repeat(grid[..., None], 3, axis=2))
    atomic_write_json(stage.file(MI_FILE), mi_table(cfg, model, seed, ranking))
    row = {
        "model": name,
        "seed": seed,
        "params": {
            k: (base_name(cfg, name) or v) if k == "base" else v
            for k, v in run.params.items()
            if k != "latent_dim"
        },
        "steps": result.steps,
        "train_minutes": round(result.seconds / 60, 1),
        "images_per_s": round(result.images_per_s),
        "eval_minutes": round((time.perf_counter() - start) / 60, 1),
        "final_terms": result.terms,
        "scores": scores,
        "curve": curve.points,
        "traversal_labels": labels,
    }
    atomic_write_json(stage.file("scores.json"), row)
    stage.mark_done(scores=scores)
    return row


MI_FILE = "mi.json"


def mi_table(
    cfg: ValidateConfig, model: Any, seed: int, ranking: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> dict[str, Any]:
    """Normalised MI of every latent with every factor, on MIG's own samples, rows in the
    traversal grid's order (`kl_ranking`)."""
    from darla.envs.sprites import Sprites
    from darla.pipelines.analysis.evaluate import model_encoder
    from darla.vision.metrics import Sampler, resolve_params
    from darla.vision.metrics.mig import MIGParams, mi_matrix

    params = resolve_params(["mig"], cfg.metric_params, cfg.point_scale)["mig"]
    assert isinstance(params, MIGParams)
    data = Sprites()
    matrix = mi_matrix(Sampler(model_encoder(model, model.image_shape), data, seed=seed), params)
    _, order, score = ranking
    return {
        "factors": list(data.factor_names),
        "latents": [int(d) for d in order],
        "latent_score": [round(float(score[d]), 4) for d in order],
        "matrix": [[round(float(v), 4) for v in matrix[d]] for d in order],
    }


class Curve:
    """Scores along training, kept across a resume (points of another config are dropped)."""

    def __init__(self, path: Path, config_hash: str) -> None:
        self.path = path
        self.hash = config_hash
        saved = read_json(path) if path.is_file() else {}
        self.points: list[dict[str, Any]] = (
            list(saved.get("points", [])) if saved.get("hash") == config_hash else []
        )

    def add(self, step: int, scores: dict[str, float]) -> None:
        self.points = [p for p in self.points if p["step"] < step] + [{"step": step, **scores}]
        atomic_write_json(self.path, {"hash": self.hash, "points": self.points})

    def keep_until(self, step: int) -> None:
        """Forget points past `step` (a resumed run re-scores them)."""
        self.points = [p for p in self.points if p["step"] <= step]


def mean_curve(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scores along training averaged over seeds, at the steps every seed was scored at."""
    curves = [row.get("curve") or [] for row in rows]
    steps = sorted(set.intersection(*(set(p["step"] for p in c) for c in curves))) if curves else []
    out = []
    for step in steps:
        points = [next(p for p in c if p["step"] == step) for c in curves]
        keys = set.intersection(*(set(p) for p in points)) - {"step"}
        out.append({"step": step, **{k: float(np.mean([p[k] for p in points])) for k in sorted(keys)}})
    return out


def summarise(per_model: dict[str, list[dict[str, Any]]], metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """One entry per model: the mean of each metric over its seeds (the published values are
    means, so never the IQM), with a 95% bootstrap CI."""
    out = []
    for name, rows in per_model.items():
        estimates = {
            m: stratified_bootstrap(
                np.array([r["scores"].get(m, np.nan) for r in rows], dtype=float),
                lambda s: float(s[0].mean()),
            )
            for m in metrics
        }
        out.append(
            {
                "model": name,
                "seeds": [r["seed"] for r in rows],
                "params": rows[0]["params"],
                "steps": rows[0]["steps"],
                "train_minutes": round(float(np.mean([r["train_minutes"] for r in rows])), 1),
                "scores": {m: e.point for m, e in estimates.items()},
                "ci": {m: e.as_dict() for m, e in estimates.items()},
                "per_seed": {m: [r["scores"].get(m) for r in rows] for m in metrics},
                "curve": mean_curve(rows),
            }
        )
    return out


def table_rows(summary: list[dict[str, Any]], metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    multi = any(len(s["seeds"]) > 1 for s in summary)
    out = []
    for entry in summary:
        flat: dict[str, Any] = {
            "model": entry["model"],
            "params": ", ".join(f"{k}={v}" for k, v in entry["params"].items()) or "-",
            "seeds": len(entry["seeds"]),
            "steps": entry["steps"],
            "train_min": entry["train_minutes"],
        }
        for metric in metrics:
            flat[metric] = round(float(entry["scores"].get(metric, float("nan"))), 3)
            if multi:
                ci = entry["ci"][metric]
                flat[f"{metric} 95% CI"] = (
                    f"[{ci['low']:.3f}, {ci['high']:.3f}]" if ci["low"] is not None else "-"
                )
            flat[f"{metric} (published)"] = PUBLISHED.get(entry["model"], {}).get(metric, "n/a")
        if multi and "mig" in metrics:
            flat["mig per seed"] = " ".join(f"{v:.3f}" for v in entry["per_seed"]["mig"])
        curve = entry["curve"]
        if len(curve) > 1 and "mig" in metrics:
            flat["mig along training"] = " ".join(f"{p['mig']:.2f}" for p in curve)
        out.append(flat)
    return out


ORDERED_ABOVE_VAE = ("beta_tcvae", "factor_vae")


def ordering(per_model: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, bool], dict[str, Any]]:
    """The published ordering on MIG (beta_tcvae and factor_vae above vae), on means over seeds,
    and each gap's 95% bootstrap CI (seeds resampled per model): a gap whose CI holds 0 is not
    settled by these seeds."""

    def mig(name: str) -> np.ndarray:
        return np.array([r["scores"].get("mig", np.nan) for r in per_model.get(name, [])], dtype=float)

    vae = mig("vae")
    if vae.size == 0 or not np.isfinite(vae).all():
        return {}, {}
    checks, gaps = {}, {}
    for name in ORDERED_ABOVE_VAE:
        other = mig(name)
        if other.size == 0 or not np.isfinite(other).all():
            continue
        key = f"{name}_above_vae_on_mig"
        checks[key] = bool(other.mean() > vae.mean())
        gap = stratified_bootstrap([other, vae], lambda s: float(s[0].mean() - s[1].mean()))
        gaps[key] = gap.as_dict()
    return checks, gaps


def ordering_text(checks: dict[str, bool], gaps: dict[str, Any]) -> str:
    """`beta_tcvae_above_vae_on_mig: yes (gap +0.050 [0.010, 0.090])`, per check."""
    parts = []
    for key, ok in checks.items():
        gap = gaps.get(key, {})
        text = f"{key}: {'yes' if ok else 'NO'}"
        if gap.get("point") is not None:
            text += f" (MIG gap {gap['point']:+.3f}"
            if gap.get("low") is not None:
                text += f", 95% CI [{gap['low']:+.3f}, {gap['high']:+.3f}]"
            text += ")"
        parts.append(text)
    return "Published ordering (means over seeds): " + "; ".join(parts)


def write_tables(
    root: Path, table: list[dict[str, Any]], checks: dict[str, bool], gaps: dict[str, Any]
) -> None:
    header = list(dict.fromkeys(k for r in table for k in r))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r.get(h, "")) for h in header) + " |" for r in table]
    if checks:
        lines += ["", ordering_text(checks, gaps)]
    atomic_write_text(root / "results.md", "\n".join(lines) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, restval="")
    writer.writeheader()
    writer.writerows(table)
    atomic_write_text(root / "results.csv", buf.getvalue())


def run(cfg: ValidateConfig) -> dict[str, Any]:
    from darla.vision import load
    from darla.vision.checkpoint import base_order

    setup_torch(cfg.threads)
    root = cfg.out / "validate"
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "config.yaml", dump_yaml(cfg))
    order = base_order({name: base_name(cfg, name) for name in cfg.models})
    done: dict[tuple[str, int], dict[str, Any]] = {}
    frames: np.ndarray | None = None
    first: np.ndarray | None = None  # the first seed's frames, for the traversal figure
    for seed in cfg.seeds:  # seed by seed: the first seed's full table comes first
        if frames is None or cfg.frames:  # a subset is drawn per seed; all combinations once
            logger.info("rendering %s sprites", "all 737,280" if cfg.frames == 0 else f"{cfg.frames:,}")
            frames = sprite_frames(cfg.frames, seed)
        first = frames if first is None else first
        for name in order:
            if seed in model_seeds(cfg, name):
                done[name, seed] = train_and_score(cfg, name, seed, frames, root)
    per_model = {name: [done[name, s] for s in model_seeds(cfg, name)] for name in cfg.models}
    summary = summarise(per_model, cfg.metrics)
    assert first is not None
    panels = []
    for entry in summary:
        seed = entry["seeds"][0]
        model = load(run_dir(root, entry["model"], seed), device=cfg.device)
        grid, labels = traversal_image(model, kl_ranking(model, first, seed))
        mig = entry["scores"].get("mig", float("nan"))
        fvae = entry["scores"].get("factor_vae", float("nan"))
        panels.append((f"{entry['model']} s{seed}  (MIG {mig:.2f}, FactorVAE {fvae:.2f})", grid, labels))
    save_traversals(root / "traversals.png", panels)
    mi_panels = [
        (f"{entry['model']} s{entry['seeds'][0]}", read_json(mi))
        for entry in summary
        if (mi := run_dir(root, entry["model"], entry["seeds"][0]) / MI_FILE).is_file()
    ]
    if mi_panels:  # folders finished before mi.json existed have none
        save_mi_figure(root / "mi.png", mi_panels)
    if any(len(entry["curve"]) > 1 for entry in summary):
        save_curves(root / "curves.png", summary, cfg.metrics)
    table = table_rows(summary, cfg.metrics)
    checks, gaps = ordering(per_model)
    write_tables(root, table, checks, gaps)
    result = {"folder": str(root), "table": table, "ordering": checks, "ordering_gaps": gaps}
    atomic_write_json(
        root / "results.json",
        {**result, "config": to_dict(cfg), "summary": summary, "rows": list(done.values())},
    )
    return result


def render(result: dict[str, Any]) -> str:
    return (Path(result["folder"]) / "results.md").read_text() + f"\n(written to {result['folder']})"


COMMAND = Command(
    words=("validate",),
    config=ValidateConfig,
    run=run,
    help="train zoo models on sprites, compare with the literature",
    render=render,
)
