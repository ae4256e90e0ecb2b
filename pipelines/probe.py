"""`darla probe`: can the task's factors be read from a vision model's features in every domain?

    darla probe --see runs/quick/see/beta_vae_dae

A transfer can fail because the policy keys on the wrong features or because the features lose
the task's variables in the target domains. This tells the two apart without any RL: frames with
known factors (the family's ground truth: random poses, each domain's appearance) are encoded;
one linear softmax probe per factor is fitted on the model's own source domains and scored on
held-out source frames and on every target and ood domain. A factor the probe reads in the
sources but not in a target is a factor the frozen features do not carry there: no policy on
them can use it. (Found this way: the quick beta_vae_dae loses the blue objects on the marble
room, the good objects of the level-1 target.)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from darla.artifacts import StageDir, atomic_save_figure, atomic_write_json
from darla.cli import Command
from darla.config import load_yaml, to_dict
from darla.errors import ArtifactError, ConfigError
from darla.log import progress
from darla.registry import unknown_name_message
from darla.runtime import setup_torch

logger = logging.getLogger(__name__)


DEFAULT_FACTORS = ("good_bearing", "bad_bearing")


@dataclass
class ProbeConfig:
    """Linear probes of ground-truth factors from a frozen model's features, per domain."""

    see: Path
    """A see folder (or its model.pt) trained on an env family."""
    factors: tuple[str, ...] = DEFAULT_FACTORS
    """Ground-truth factors to probe (SeekAvoid: the good and bad objects' bearing bins)."""
    frames: int = 400
    """Frames rendered per domain (the source frames are split 75/25 into fit and held out)."""
    seed: int = 0
    """Seed of the poses and object yaws."""
    fit_domains: tuple[str, ...] = ()
    """Domains the probes are fitted on (default: the model's source domains). Fit on one room
    and score the others to ask whether the features carry a factor the same way across a room
    change, as a policy trained in that room needs them to."""
    out: Path | None = None
    """Folder for probe.json and probe.png (default: the see folder)."""
    batch_size: int = 256
    """Frames encoded at once."""
    device: str = "auto"
    """Torch device: auto, cpu, cuda."""
    threads: int = 0
    """Torch CPU threads (0 = all cores)."""

    def validate(self) -> None:
        if self.frames < 8:
            raise ConfigError(
                f"frames must be >= 8 (the probe needs fit and held-out frames), got {self.frames}"
            )
        if not self.factors:
            raise ConfigError("factors is empty: name at least one ground-truth factor")


def source_domains(see_dir: Path, family: Any) -> tuple[str, ...]:
    """The domains the model saw (its see config), else the family's source split."""
    data = load_yaml(see_dir / "config.yaml") if (see_dir / "config.yaml").is_file() else {}
    seen = tuple(data.get("domains") or ()) if isinstance(data, dict) else ()
    return seen or family.domain_names("source")


def can_probe(family: Any, factors: tuple[str, ...] = DEFAULT_FACTORS) -> bool:
    """Whether the family's ground truth renders poses in a chosen domain (what the probe needs)
    and has `factors` (by default the room families' object bearings, which CarRacing lacks: `darla
    run` skips its probe stage; `darla probe --factors offset heading` probes it)."""
    gt = family.ground_truth()
    return hasattr(gt, "sample_factors_in_domain") and set(factors) <= set(gt.factor_names)


def fit_probe(x: np.ndarray, y: np.ndarray) -> Any:
    """A multinomial logistic regression on standardised features (deterministic: lbfgs)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, y)


PROBE_FILE = "probe.json"


def probe_dir(out: Path, model: str) -> Path:
    """Where `darla run` keeps a vision model's probe: <run>/probe/<model>/."""
    return Path(out) / "probe" / model


def model_hash(see: Path) -> str:
    from darla.artifacts import file_hash
    from darla.vision import see_folder

    return file_hash(see_folder(see) / "model.pt")


def probe_stage(cfg: ProbeConfig) -> StageDir:
    """The probe as a stage folder of `darla run`: its config names the model's weights by content,
    so a retrained see stage makes the probe stale."""
    if cfg.out is None:
        raise ConfigError("a probe stage needs an out folder")
    settings = {k: v for k, v in to_dict(cfg).items() if k not in ("device", "threads", "batch_size")}
    if not cfg.fit_domains:  # added later: a finished probe at the default stays finished
        settings.pop("fit_domains")
    return StageDir(cfg.out, {"probe": settings, "model_hash": model_hash(cfg.see)})


def is_probe_done(cfg: ProbeConfig) -> bool:
    return probe_stage(cfg).is_done()


def run_stage(cfg: ProbeConfig) -> Path:
    """Run the probe unless its folder is done with this config and these weights."""
    stage = probe_stage(cfg)
    if not stage.is_done():
        stage.prepare()
        run(cfg)
        stage.mark_done()
    return stage.path


def run(cfg: ProbeConfig) -> dict[str, Any]:
    import darla.envs
    from darla.pipelines.evaluate import resolve_dataset_name
    from darla.vision import load, see_folder

    setup_torch(cfg.threads)
    see_dir = see_folder(cfg.see)
    if not see_dir.exists():
        raise ArtifactError(f"model not found: {cfg.see}")
    env = resolve_dataset_name("auto", cfg.see)
    if env not in darla.envs.FAMILIES.names():
        raise ConfigError(
            f"{cfg.see} was trained on {env!r}, which has no domains to compare; "
            f"probe a model trained on an env family: {', '.join(darla.envs.FAMILIES.names())}"
        )
    family = darla.envs.get_family(env)
    if not hasattr(family.ground_truth(), "sample_factors_in_domain"):
        raise ConfigError(f"{env}'s ground truth cannot render a chosen domain; nothing to probe")
    model = load(cfg.see, device=cfg.device)
    gt = family.ground_truth(int(model.image_shape[0]))
    for name in cfg.factors:
        if name not in gt.factor_names:
            raise ConfigError(unknown_name_message("factor", name, list(gt.factor_names)))
    columns = [gt.factor_names.index(f) for f in cfg.factors]
    sources = source_domains(see_dir, family)
    for d in cfg.fit_domains:
        family.domain(d)  # an unknown name is a clear error naming the family's domains
    fit = tuple(cfg.fit_domains) or sources
    domains = list(dict.fromkeys([*sources, *fit, *family.domain_names()]))
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    feats: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    with progress(total=len(domains), desc="probe: render + encode", unit="domain") as bar:
        for d in domains:
            factors = gt.sample_factors_in_domain(d, cfg.frames, rng)
            images = gt.sample_observations_from_factors(factors, rng)
            feats[d] = model.encode(images, batch_size=cfg.batch_size).cpu().numpy()
            labels[d] = factors[:, columns]
            bar.update(1)
    gt.close()
    n_fit = round(cfg.frames * 0.75)
    fit_x = np.concatenate([feats[d][:n_fit] for d in fit])
    accuracy: dict[str, dict[str, float]] = {}
    for j, factor in enumerate(cfg.factors):
        probe = fit_probe(fit_x, np.concatenate([labels[d][:n_fit, j] for d in fit]))
        per = {}
        for d in domains:
            rows = slice(n_fit, None) if d in fit else slice(None)
            per[d] = round(float(probe.score(feats[d][rows], labels[d][rows, j])), 4)
        accuracy[factor] = per
    split = {d: ("source" if d in sources else family.split_of(d)) for d in domains}
    summary = {
        factor: {
            s: round(float(np.mean([a for d, a in per.items() if split[d] == s])), 4)
            for s in darla.envs.SPLITS
            if any(split[d] == s for d in per)
        }
        for factor, per in accuracy.items()
    }
    chance = {f: round(1.0 / gt.factor_sizes[c], 4) for f, c in zip(cfg.factors, columns)}
    out = Path(cfg.out) if cfg.out is not None else see_dir
    result = {
        "see": str(cfg.see),
        "model": model.name,
        "env": env,
        "fit_domains": list(fit),
        "split": split,
        "accuracy": accuracy,
        "summary": summary,
        "chance": chance,
        "seconds": round(time.perf_counter() - start, 1),
        "model_hash": model_hash(cfg.see),
        "config": to_dict(cfg),
    }
    out.mkdir(parents=True, exist_ok=True)
    plot(result, out / "probe.png")
    atomic_write_json(out / PROBE_FILE, result)  # last: a probe.json means the probe finished
    result["files"] = [str(out / "probe.json"), str(out / "probe.png")]
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    """Heatmap factor x domain of probe accuracy, domains grouped by split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    factors = list(result["accuracy"])
    domains = list(result["split"])
    grid = np.array([[result["accuracy"][f][d] for d in domains] for f in factors])
    fig, ax = plt.subplots(figsize=(2.5 + 0.8 * len(domains), 3.2 + 0.6 * len(factors)))
    ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(
        range(len(domains)), [f"{d}\n({result['split'][d]})" for d in domains], rotation=60, ha="right"
    )
    ax.set_yticks(range(len(factors)), [f"{f} (chance {result['chance'][f]:.2f})" for f in factors])
    for i in range(len(factors)):
        for j in range(len(domains)):
            ax.text(
                j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color="w" if grid[i, j] < 0.6 else "k"
            )
    fitted = ", ".join(result["fit_domains"])
    ax.set_title(f"{result['model']}: linear probe accuracy, fitted on {fitted}", fontsize=9, wrap=True)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{result['model']} on {result['env']}: linear probe accuracy (fitted on {', '.join(result['fit_domains'])})"
    ]
    width = max(len(d) for d in result["split"])
    factors = list(result["accuracy"])
    lines.append(f"  {'domain':<{width}} {'split':<7} " + " ".join(f"{f:>14}" for f in factors))
    for d, s in result["split"].items():
        lines.append(
            f"  {d:<{width}} {s:<7} " + " ".join(f"{result['accuracy'][f][d]:>14.3f}" for f in factors)
        )
    lines.append(
        f"  {'chance':<{width}} {'':<7} " + " ".join(f"{result['chance'][f]:>14.3f}" for f in factors)
    )
    lines.append("  (fitted domains' rows: held-out frames)  files: " + ", ".join(result.get("files", [])))
    return "\n".join(lines)


COMMAND = Command(
    words=("probe",),
    config=ProbeConfig,
    run=run,
    help="can the task's factors be read from a model's features in every domain",
    render=render,
)
