"""`darla scan train | describe | imagine`: SCAN symbols on a frozen vision model.

    darla scan train --vision runs/exp1/see/beta_vae_dae    # -> runs/exp1/see/scan-beta_vae_dae/
    darla scan describe frame.png --scan runs/exp1/see/scan-beta_vae_dae
    darla scan imagine "wall=brick,good=green" --scan runs/exp1/see/scan-beta_vae_dae --out grid.png
    darla scan imagine "wall=brick,floor=lava IGNORE floor=lava" --scan ...

`train_scan` trains SCAN as the zoo model it is, through the see stage (so it is skipped when done
and resumed when interrupted, like every model), then scores it: `scan.json` (img2sym accuracy on
held-out factor combinations, a sym2img self-check, a linear probe) and `sym2img.png`. Symbols are
'factor=value' terms (abbreviations by unique prefix or substring are accepted); unknown names are
errors that list the valid symbols.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from darla.artifacts import SeeArtifact, atomic_write_json, file_hash, read_json
from darla.cli import Command
from darla.config import from_dict
from darla.errors import ArtifactError, ConfigError
from darla.pipelines.stages.see import SeeConfig, run_see
from darla.runtime import resolve_device, setup_torch
from darla.seeding import derive_seed
from darla.vision import checkpoint_path
from darla.vision.figures import save_png, tile
from darla.vision.models.scan import (
    OPERATORS,
    SCAN,
    Gaussian,
    ScanConfig,
    gaussian_kl_between,
    load_scan,
    recombine,
)
from darla.vision.trainer import TrainConfig

logger = logging.getLogger(__name__)

SCAN_REPORT = "scan.json"
"""SCAN's scores on held-out symbol combinations, beside the see stage's own files."""


# ----------------------------------------------------------------------------- train
@dataclass
class ScanTrainConfig:
    """Train SCAN: ground symbols built from the env's factors in a frozen vision model's latents."""

    vision: str = ""
    """See folder of the frozen beta_vae / beta_vae_dae (e.g. runs/exp1/see/beta_vae_dae)."""
    out: Path | None = None
    """experiment folder; SCAN is trained by the see stage into <out>/see/scan-<vision folder name>/
    (default: the experiment of the vision model)"""
    env: str = ""
    """Env family of the symbols and images; empty: the vision see folder's env."""
    params: dict[str, Any] = field(default_factory=dict)
    """SCAN hyperparameters (beta, grounding, factors, examples, heldout, hidden, keep_prob, features)."""
    steps: int = 3000
    """Optimisation steps."""
    batch_size: int = 64
    """Examples per step."""
    lr: float = 1e-3
    """Adam learning rate."""
    samples: int = 8
    """sym2img samples per held-out combination in sym2img.png (and in the sym2img check)."""
    seed: int = 0
    """One seed for the examples, the held-out split, initialisation and minibatches."""
    device: str = "auto"
    """Torch device: auto, cpu, cuda."""
    threads: int = 0
    """Torch threads (0 = all cores)."""

    hash_exclude: ClassVar[tuple[str, ...]] = ("out", "device", "threads")

    def validate(self) -> None:
        if not self.vision:
            raise ConfigError(
                "scan train needs --vision: the see folder of a trained beta_vae or beta_vae_dae"
            )
        bad = {"base", "env", "seed", "vocabulary"} & set(self.params)
        if bad:
            raise ConfigError(
                f"scan params {sorted(bad)} are set by the command itself (use --vision/--env/--seed)"
            )
        from_dict(ScanConfig, {**self.params, "base": self.vision}, where="params")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.samples < 1:
            raise ConfigError(
                f"need steps, batch_size, samples >= 1 and lr > 0; got {self.steps}, {self.batch_size}, "
                f"{self.samples}, {self.lr}"
            )

    def see_config(self) -> SeeConfig:
        """SCAN as the see stage trains it: a zoo model on `vision` (its base), with its own examples
        (the see stage's frames are not used: a minimal set is collected), resumable like any model."""
        base = SeeArtifact.read(self.vision)
        out = Path(self.out) if self.out is not None else base.path.parent.parent
        return SeeConfig(
            env=self.env or base.env,
            model="scan",
            name=f"scan-{base.name}",
            out=out,
            seed=self.seed,
            size=base.size,
            frames=max(2, 2 * self.batch_size),
            domains=base.domains,
            params={**self.params, "base": str(base.path), "env": self.env, "seed": self.seed},
            model_train={},
            train=TrainConfig(
                steps=self.steps,
                batch_size=self.batch_size,
                lr=self.lr,
                holdout=0.0,
                checkpoint_every=min(500, self.steps),
                image_every=0,
            ),
            workers=1,
            device=self.device,
            threads=self.threads,
        )

    @property
    def folder(self) -> Path:
        return self.see_config().folder


@torch.no_grad()
def sym2img_check(model: SCAN, samples: int, generator: torch.Generator, limit: int = 32) -> dict[str, Any]:
    """Imagine each held-out combination from its full symbol, read the samples back with img2sym.

    A self-consistency figure (SCAN grades its own samples): the fraction of named factors that
    img2sym recovers from sym2img samples. Returns the figure and the images of the first few.
    """
    d = model.data
    combos = torch.unique(d["factors"][d["heldout"]], dim=0)[:limit]
    if len(combos) == 0:
        return {}
    hits, images = [], []
    for row in combos:
        y = model.symbols_of(row[None])
        x = model.sym2img(y, samples, generator)
        pred = model.predict_factors(model.img2sym(x)).cpu()
        hits.append((pred == row[None]).float().mean(0))
        images.append(x)
    per = torch.stack(hits).mean(0)
    return {
        "combinations": len(combos),
        "accuracy": float(per.mean()),
        "per_factor": {f: round(float(a), 4) for f, a in zip(model.groups, per)},
        "images": torch.cat(images[:8]),
    }


def latent_probe(model: SCAN, steps: int = 300, lr: float = 0.05) -> dict[str, Any]:
    """Reference for img2sym: a supervised linear softmax probe per factor on the vision means,
    fitted on the training combinations, scored on the held-out ones (same examples as SCAN)."""
    d = model.data
    train, held = ~d["heldout"], d["heldout"]
    if int(held.sum()) == 0:
        return {}
    x = d["mu"]
    x = (x - x[train].mean(0)) / x[train].std(0).clamp_min(1e-6)
    per = {}
    with torch.enable_grad():
        for j, (factor, idx) in enumerate(model.groups.items()):
            probe = torch.nn.Linear(x.shape[1], len(idx))
            opt = torch.optim.Adam(probe.parameters(), lr=lr)
            y = d["factors"][:, j]
            for _ in range(steps):
                loss = torch.nn.functional.cross_entropy(probe(x[train]), y[train])
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                per[factor] = float((probe(x[held]).argmax(1) == y[held]).float().mean())
    return {
        "accuracy": float(np.mean(list(per.values()))),
        "per_factor": {k: round(v, 4) for k, v in per.items()},
    }


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    img = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return np.repeat(img, 3, axis=3) if img.shape[3] == 1 else img


def train_scan(cfg: ScanTrainConfig) -> Path:
    """Train (or skip, or resume) SCAN through the see stage, then score it on held-out symbol
    combinations (`scan.json`, `sym2img.png` in its see folder, redone when the model changes)."""
    cfg.validate()
    folder = run_see(cfg.see_config())
    done = SeeArtifact.read(folder).completion_hash
    report = folder / SCAN_REPORT
    if report.is_file() and read_json(report).get("model") == done:
        return folder
    setup_torch(cfg.threads)
    model = load_scan(folder, device=resolve_device(cfg.device))
    model.eval()
    figure_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "scan", "figure"))
    check = sym2img_check(model, cfg.samples, figure_gen)
    images = check.pop("images", None)
    if images is not None:
        grid = _to_uint8(images)
        save_png(folder / "sym2img.png", tile(grid, len(grid) // cfg.samples, cfg.samples))
    vision_file = checkpoint_path(cfg.vision)
    metrics = {
        "model": done,
        "vision": str(vision_file),
        "vision_hash": file_hash(vision_file),
        "vision_model": model.base.name,
        "env": model.config.env,
        "vocabulary": list(model.vocabulary),
        "factors": list(model.groups),
        "img2sym_heldout": model.img2sym_accuracy(heldout=True),
        "img2sym_train": model.img2sym_accuracy(heldout=False),
        "sym2img_heldout_self_check": check,
        "linear_probe_heldout": latent_probe(model),
        "steps": cfg.steps,
    }
    atomic_write_json(report, metrics)
    held = metrics["img2sym_heldout"]
    logger.info(
        "scan: img2sym on held-out combinations %.3f (chance %.3f), %d examples",
        held.get("accuracy", float("nan")),
        held.get("chance", float("nan")),
        held.get("examples", 0),
    )
    return folder


def _run_train(cfg: ScanTrainConfig) -> dict[str, Any]:
    import json

    path = train_scan(cfg)
    metrics = json.loads((path / SCAN_REPORT).read_text())
    held = metrics.get("img2sym_heldout", {})
    return {
        "scan_dir": str(path),
        "img2sym_heldout_accuracy": held.get("accuracy"),
        "chance": held.get("chance"),
        "img2sym_train_accuracy": metrics.get("img2sym_train", {}).get("accuracy"),
        "linear_probe_heldout_accuracy": metrics.get("linear_probe_heldout", {}).get("accuracy"),
        "sym2img_self_check": metrics.get("sym2img_heldout_self_check", {}).get("accuracy"),
        "symbols": len(metrics.get("vocabulary", [])),
    }


# ----------------------------------------------------------------------------- describe
@dataclass
class ScanDescribeConfig:
    """Describe an image with SCAN's symbols (img2sym), with probabilities."""

    image: str = ""
    """Image file (PNG/JPEG); resized to the vision model's input size."""
    scan: str = ""
    """SCAN folder (from `darla scan train`) or its model.pt."""
    top: int = 3
    """Values shown per factor, most probable first."""
    device: str = "auto"
    """Torch device."""

    def validate(self) -> None:
        if not self.image or not self.scan:
            raise ConfigError("scan describe needs an IMAGE and --scan PATH (a SCAN folder)")
        if self.top < 1:
            raise ConfigError(f"top must be >= 1, got {self.top}")


def read_image(path: str | Path, shape: tuple[int, int, int]) -> np.ndarray:
    """An image file as uint8 (H, W, C) at the model's size; missing/unreadable -> ArtifactError."""
    from PIL import Image, UnidentifiedImageError

    file = Path(path)
    if not file.is_file():
        raise ArtifactError(f"image not found: {file}")
    try:
        img = Image.open(file).convert("L" if shape[2] == 1 else "RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ArtifactError(f"cannot read image {file}: {exc}") from None
    h, w, c = shape
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    arr = np.array(img, dtype=np.uint8)  # a writable copy
    return arr.reshape(h, w, c)


def describe(cfg: ScanDescribeConfig) -> dict[str, Any]:
    cfg.validate()
    model = load_scan(cfg.scan, device=cfg.device)
    frame = read_image(cfg.image, model.image_shape)
    with torch.no_grad():
        probs = model.img2sym(model.to_float(model.as_batch(frame)))
    desc = model.describe(probs)[0]
    symbols = {f: dict(list(values.items())[: cfg.top]) for f, values in desc.items()}
    best = ",".join(f"{f}={next(iter(v))}" for f, v in desc.items())
    return {"image": str(cfg.image), "scan": str(cfg.scan), "symbols": symbols, "best": best}


def _render_describe(result: dict[str, Any]) -> str:
    lines = [f"{result['image']}: {result['best']}"]
    for factor, values in result["symbols"].items():
        shown = ", ".join(f"{v} {p:.2f}" for v, p in values.items())
        lines.append(f"  {factor:<14} {shown}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- imagine
@dataclass
class ScanImagineConfig:
    """Imagine images for a symbol expression (sym2img), written as a PNG grid."""

    symbols: str = ""
    """'factor=value,...' (one k-hot concept), optionally combined: 'A AND B', 'A IN_COMMON B', 'A IGNORE B'."""
    scan: str = ""
    """SCAN folder (from `darla scan train`) or its model.pt."""
    out: Path = Path("imagine.png")
    """PNG grid of the samples."""
    n: int = 16
    """Number of samples."""
    cols: int = 8
    """Samples per grid row."""
    seed: int = 0
    """Seeds the samples."""
    threshold: float = 0.5
    """Nats of KL from the prior above which a concept 'specifies' a latent unit (for the operators)."""
    device: str = "auto"
    """Torch device."""

    def validate(self) -> None:
        if self.threshold < 0:
            raise ConfigError(f"threshold must be >= 0, got {self.threshold}")
        if not self.symbols.strip() or not self.scan:
            raise ConfigError(
                'scan imagine needs SYMBOLS (e.g. "wall=brick,good_color=green") and --scan PATH'
            )
        if self.n < 1 or self.cols < 1:
            raise ConfigError(f"n and cols must be >= 1, got {self.n}, {self.cols}")


_OP_SPLIT = re.compile(r"\s+(" + "|".join(n.replace("_", "[_ ]") for n in OPERATORS.names()) + r")\s+", re.I)


def parse_expression(model: SCAN, text: str, threshold: float = 0.5) -> Gaussian:
    """'A OP B OP C ...' (left to right) -> one concept distribution in SCAN's latent space."""
    parts = _OP_SPLIT.split(text.strip())
    with torch.no_grad():
        concept = model.symbol_posterior(model.parse_symbols(parts[0]).to(model.device))
        for op, operand in zip(parts[1::2], parts[2::2]):
            other = model.symbol_posterior(model.parse_symbols(operand).to(model.device))
            concept = recombine(op, concept, other, threshold=threshold)
    return concept


def imagine(cfg: ScanImagineConfig) -> dict[str, Any]:
    cfg.validate()
    model = load_scan(cfg.scan, device=cfg.device)
    concept = parse_expression(model, cfg.symbols, cfg.threshold)
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "scan", "imagine"))
    images = _to_uint8(model.imagine(concept, cfg.n, gen))
    cols = min(cfg.cols, cfg.n)
    save_png(cfg.out, tile(images, -(-cfg.n // cols), cols))
    kl = _concept_kl(concept)
    return {
        "out": str(cfg.out),
        "symbols": cfg.symbols,
        "samples": cfg.n,
        "concept_kl_total": round(float(sum(kl)), 3),
        "specified_units": [i for i, v in enumerate(kl) if v > cfg.threshold],
    }


def _concept_kl(concept: Gaussian) -> list[float]:
    """Per latent unit KL of the concept from the prior (large = the concept specifies that unit)."""
    mu, logvar = concept
    kl = gaussian_kl_between((mu, logvar), (torch.zeros_like(mu), torch.zeros_like(logvar)))
    return [round(float(v), 3) for v in kl.flatten()]


TRAIN = Command(
    words=("scan", "train"),
    config=ScanTrainConfig,
    run=_run_train,
    help="SCAN: ground env-factor symbols in a frozen vision model",
)
DESCRIBE = Command(
    words=("scan", "describe"),
    config=ScanDescribeConfig,
    run=describe,
    help="SCAN: symbols for an image",
    positional=("image",),
    render=_render_describe,
)
IMAGINE = Command(
    words=("scan", "imagine"),
    config=ScanImagineConfig,
    run=imagine,
    help="SCAN: images for a symbol expression",
    positional=("symbols",),
    out_is_file=True,
)

__all__ = ["DESCRIBE", "IMAGINE", "TRAIN", "ScanTrainConfig", "parse_expression", "train_scan"]
