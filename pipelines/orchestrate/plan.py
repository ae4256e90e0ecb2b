"""The plan of a run: which stages, with which configs, reading which others.

One planner for `darla see` (a model and what it is built on), `darla run` (vision models x modes x
algorithms x seeds, oracles, transfers, probes) and `darla compare` (several runs in one sweep).
Every trained thing is planned once and shared by everything that reads it; a stage whose config
and inputs are unchanged is skipped by the stage itself, so re-running a plan redoes only what is
unfinished or stale. Where a task runs is a backend's business (`local`, `ray`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from darla.agents.config import ActConfig
from darla.agents.modes import MODES
from darla.agents.readouts import LATENT, parse_readout
from darla.config import from_dict, to_dict
from darla.errors import ArtifactError, ConfigError
from darla.pipelines.analysis.evaluate import EvaluateConfig, MetricsStage, metrics_dir
from darla.pipelines.analysis.probe import ProbeConfig, probe_dir
from darla.pipelines.orchestrate.tasks import Task, task
from darla.pipelines.stages.act import act_dir
from darla.pipelines.stages.see import SeeConfig, SeeSettings, upstream_ref
from darla.pipelines.stages.transfer import TransferConfig
from darla.vision import MODELS

if TYPE_CHECKING:
    from darla.pipelines.orchestrate.run import RunConfig

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- vision models
def see_closure(configs: list[SeeConfig], settings: SeeSettings | None = None) -> list[SeeConfig]:
    """`configs` and every model they are built on (`VisionModel.upstream` naming a zoo model, e.g.
    beta_vae_dae's `dae`), each after what it is built on. A model trained only because another is
    built on it takes `settings` (default: the first config's) with its `model_params` entry, not the
    `params` of the models asked for."""
    if not configs:
        return []
    base = settings or configs[0]
    first = configs[0]
    named = {c.model: c for c in configs}
    order: list[SeeConfig] = []
    placed: set[str] = set()

    def visit(cfg: SeeConfig, stack: list[str]) -> None:
        key = cfg.name or cfg.model
        if key in placed:
            return
        if cfg.model in stack:
            cycle = " -> ".join([*stack[stack.index(cfg.model) :], cfg.model])
            raise ConfigError(f"the models build on each other in a cycle: {cycle}")
        for req in MODELS.get(cfg.model).upstream:
            ref = upstream_ref(cfg, req)
            if not ref:
                raise ConfigError(
                    f"{cfg.model} is built on {req.interface}: set --params {req.field}=<see folder or zoo model>"
                )
            if ref in MODELS:
                upstream = named.get(ref) or SeeConfig.of(
                    base, env=first.env, model=ref, out=first.out, seed=first.seed, params={}
                )
                visit(upstream, [*stack, cfg.model])
        placed.add(key)
        order.append(cfg)

    for cfg in configs:
        visit(cfg, [])
    return order


def see_needs(cfg: SeeConfig) -> tuple[Path, ...]:
    """The see folders of this experiment that `cfg`'s model is built on."""
    return tuple(
        Path(cfg.out) / "see" / ref
        for ref in (upstream_ref(cfg, req) for req in MODELS.get(cfg.model).upstream)
        if ref in MODELS
    )


def see_tasks(configs: list[SeeConfig]) -> list[Task]:
    return [task("see", c.name or c.model, c.folder, c, needs=see_needs(c), cost=2.0) for c in configs]


# ----------------------------------------------------------------------------- policies
@dataclass(frozen=True)
class Policy:
    """One act run of the plan."""

    model: str | None
    mode: str
    algo: str
    seed: int
    readout: str | None = None
    """what a frozen policy reads (`readout_name`: '' = the latent code); None for other modes"""

    @property
    def label(self) -> str:
        mode = f"{self.mode}@{self.readout}" if self.readout else self.mode
        method = f"{self.model}/{mode}" if self.model else mode
        return f"{method}/{self.algo}/s{self.seed}"


def plan_policies(cfg: RunConfig, modes: tuple[str, ...], seeds: tuple[int, ...]) -> list[Policy]:
    out: list[Policy] = []
    for algo in cfg.algos:
        for mode in modes:
            models: tuple[str | None, ...] = (None,)
            if MODES.get(mode).needs_vision:
                models = tuple(m for m in cfg.models if mode in cfg.model_modes.get(m, cfg.modes))
            readouts = cfg.planned_readouts if MODES.get(mode).frozen_features else (None,)
            for model in models:
                for readout in readouts:
                    out.extend(Policy(model, mode, algo, seed, readout) for seed in seeds)
    return out


def act_config(
    cfg: RunConfig,
    *,
    see_dir: Path | None,
    mode: str,
    algo: str,
    seed: int,
    out: Path,
    domains: tuple[str, ...] = (),
    readout: str | None = None,
) -> ActConfig:
    """The act config of one policy; `readout` (a frozen policy's, as `readout_name` gives it)
    replaces the shared feature_layer and feature_head."""
    data = {
        **to_dict(cfg.act),
        "env": cfg.family,
        "see": str(see_dir) if see_dir is not None else None,
        "mode": mode,
        "algo": algo,
        "seed": seed,
        "out": str(out),
        "name": None,
        "domains": list(domains),
    }
    if see_dir is None and cfg.act.size is None:
        data["size"] = cfg.see.size  # pixels sees the same frames as the vision models
    if readout is not None:
        data["feature_layer"], data["feature_head"] = parse_readout(readout or LATENT)
    return from_dict(ActConfig, data)


def match_oracle(policy: Policy, oracles: dict[Policy, Path]) -> Path | None:
    """The oracle for a policy: same model, mode, readout and algo (same seed if trained, else the
    first). Failing that, an oracle of the same algo whose features are as trainable as the
    policy's (finetune has no finetune oracle: the end-to-end pixels oracle is its ceiling, not a
    frozen one that its own target return can pass), preferring the same vision model; failing
    that, the first oracle of the same algo."""

    def method(p: Policy) -> tuple[str | None, str, str | None, str]:
        return (p.model, p.mode, p.readout, p.algo)

    same = [p for p in oracles if method(p) == method(policy)]
    for p in same:
        if p.seed == policy.seed:
            return oracles[p]
    if same:
        return oracles[same[0]]
    frozen = MODES.get(policy.mode).frozen_features
    candidates = [p for p in oracles if p.algo == policy.algo]
    ranked = sorted(
        candidates,
        key=lambda p: (MODES.get(p.mode).frozen_features != frozen, p.model != policy.model),
    )
    return oracles[ranked[0]] if ranked else None


def check_readout_layers(cfg: RunConfig) -> None:
    """Every frozen readout that names a layer names one its vision model has, checked on an
    untrained build of the model before any stage runs, so that a typo fails at once instead of
    after the see stage. A model that cannot be built before what it is built on is trained (iin and
    scan read their base's layers) is checked when act loads it."""
    import torch

    from darla.vision.base import build, require_encoder_layer

    layers: dict[str, set[str]] = {}
    for policy in plan_policies(cfg, cfg.modes, cfg.seeds[:1]):
        if policy.model and policy.readout:
            layers.setdefault(policy.model, set()).add(parse_readout(policy.readout)[0])
    for model, wanted in layers.items():
        scfg = SeeConfig.of(cfg.see, env=cfg.family, model=model, out=cfg.out, seed=cfg.seed)
        with torch.random.fork_rng(devices=[]):  # building initialises weights: keep the run's RNG
            try:
                vision = build(model, image_shape=(scfg.size, scfg.size, 3), **scfg.effective_params())
            except (ConfigError, ArtifactError) as exc:
                if not MODELS.get(model).upstream:
                    raise
                logger.debug("readouts of %s are checked when act loads it: %s", model, exc)
                continue
        for layer in sorted(wanted):
            require_encoder_layer(vision, layer)


# ----------------------------------------------------------------------------- the run
def plan_run(cfg: RunConfig, *, threads: int = 0, probe_factors: tuple[str, ...] = ()) -> list[Task]:
    """Every stage of `darla run` in dependency order: see (and what the models are built on),
    probes, oracles and policies (those without a vision model first, then oracles, which every
    transfer of their kind waits for, then the costliest modes, so no long stage starts last), then
    transfers. `threads`: torch threads of stages whose own setting is 0 (all cores); `probe_factors`:
    the env family's task factors a probe reads (none: no probe)."""
    out = Path(cfg.out)
    tasks: list[Task] = []
    see_dirs: dict[str, Path] = {}
    if any(MODES.get(m).needs_vision for m in cfg.modes):
        asked = [SeeConfig.of(cfg.see, env=cfg.family, model=m, out=out, seed=cfg.seed) for m in cfg.models]
        configs = see_closure(asked, cfg.see)
        for scfg in configs:
            scfg.threads = scfg.threads or threads
        tasks += see_tasks(configs)
        see_dirs = {c.model: c.folder for c in configs if c.model in cfg.models}

    if cfg.probe_frames and probe_factors:
        for model, see_dir in see_dirs.items():
            pcfg = ProbeConfig(
                see=see_dir,
                factors=probe_factors,
                frames=cfg.probe_frames,
                seed=cfg.seed,
                out=probe_dir(out, model),
                device=cfg.see.device,
                threads=threads,
            )
            tasks.append(task("probe", model, probe_dir(out, model), pcfg, needs=(see_dir,), cost=0.2))

    if cfg.disentanglement:
        for model, see_dir in see_dirs.items():
            ecfg = EvaluateConfig(
                see=see_dir, seed=cfg.seed, point_scale=cfg.metrics_point_scale, threads=threads
            )
            folder = metrics_dir(out, model)
            tasks.append(
                task("metrics", model, folder, MetricsStage(ecfg, folder), needs=(see_dir,), cost=0.5)
            )

    def policy_task(kind: str, policy: Policy, root: Path, domains: tuple[str, ...]) -> Task:
        see_dir = see_dirs[policy.model] if policy.model else None
        acfg = act_config(
            cfg,
            see_dir=see_dir,
            mode=policy.mode,
            algo=policy.algo,
            seed=policy.seed,
            out=root,
            domains=domains,
            readout=policy.readout,
        )
        acfg.threads = cfg.act.threads or threads
        needs = (see_dir,) if see_dir else ()
        return task(kind, policy.label, act_dir(acfg), acfg, needs=needs, cost=MODES.get(policy.mode).cost)

    policies = plan_policies(cfg, cfg.modes, cfg.seeds)
    oracles: list[Policy] = []
    if cfg.oracle:
        oracles = plan_policies(cfg, cfg.planned_oracle_modes, cfg.oracle_seeds or cfg.seeds[:1])
    family_target = cfg.target_domains()
    act_tasks = {p: policy_task("act", p, out, ()) for p in policies}
    oracle_tasks = {p: policy_task("oracle", p, out / "oracle", family_target) for p in oracles}

    def priority(item: tuple[Policy, Task]) -> tuple[bool, bool, float]:
        policy, planned = item
        return (policy.model is not None, planned.kind != "oracle", -MODES.get(policy.mode).cost)

    tasks += [planned for _, planned in sorted([*oracle_tasks.items(), *act_tasks.items()], key=priority)]
    oracle_dirs = {p: planned.folder for p, planned in oracle_tasks.items()}
    for policy, act in sorted(act_tasks.items(), key=priority):
        oracle = match_oracle(policy, oracle_dirs)
        tcfg = TransferConfig.of(
            cfg.transfer,
            act=act.folder,
            out=out,
            oracle=oracle,
            seed=cfg.seed,
            threads=cfg.transfer.threads or threads,
        )
        folder = out / "transfer" / act.folder.relative_to(out / "act")
        needs = (act.folder,) + ((oracle,) if oracle else ())
        tasks.append(task("transfer", policy.label, folder, tcfg, needs=needs, cost=0.5))
    return tasks


def transfer_folders(tasks: list[Task]) -> list[Path]:
    return [t.folder for t in tasks if t.kind == "transfer"]


def describe(tasks: list[Task]) -> dict[str, Any]:
    """How many tasks of each kind a plan holds (for logs and the live display)."""
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.kind] = counts.get(t.kind, 0) + 1
    return counts
