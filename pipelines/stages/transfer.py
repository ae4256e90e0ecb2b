"""Stage 3, transfer: zero-shot evaluation of a trained policy on held-out domains.

`darla transfer --act runs/exp1/act/beta_vae_dae/ppo/s0` evaluates the policy, with no
retraining, on every source, target and out-of-distribution (ood) domain of its env family.
Every policy meets the *same* episodes (`darla.agents.evaluation`), so returns are comparable
across policies, seeds and runs. A uniform-random policy on those episodes gives the floor; an
*oracle* (the same kind of agent trained on the target domains) gives the ceiling.

Zero-shot means the target domains were never seen: a policy or anything behind it (its vision
model, what that was built on, an expert it was cloned from) that saw a target or ood domain is
refused before anything runs (`darla.artifacts.check_zero_shot`).

Evaluations are cached per (policy, domain, episode settings) under `<out>/transfer/.episodes/`,
so the random floor and an oracle shared by several policies are computed once, and a killed
evaluation resumes domain by domain.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from darla.agents.evaluation import (
    EnvPool,
    EvalSettings,
    PolicyEval,
    agent_action_fn,
    evaluate_policies,
    random_action_fn,
)
from darla.artifacts import (
    RESULTS_FILE,
    SAMPLED_ROLE,
    SPLITS,
    ActArtifact,
    StageDir,
    TransferResult,
    atomic_write_json,
    check_zero_shot,
)
from darla.cli import Command
from darla.errors import ConfigError, DarlaError
from darla.pipelines.stages.transfer_results import build_results, summary
from darla.registry import check_choice
from darla.runtime import setup_torch

if TYPE_CHECKING:
    from darla.envs import EnvFamily

logger = logging.getLogger(__name__)

EPISODE_CACHE = ".episodes"


@dataclass
class TransferSettings:
    """How policies are evaluated (shared by every transfer of a run: `darla run --transfer.episodes`)."""

    episodes: int = 50
    """evaluation episodes per domain and policy (20 proved too noisy)"""
    splits: tuple[str, ...] = SPLITS
    """domain splits to evaluate on"""
    random_floor: bool = True
    """also evaluate a uniform-random policy on the same episodes (the floor)"""
    oracle_splits: tuple[str, ...] = ("target",)
    """splits the oracle is evaluated on (it is a ceiling only where it was trained)"""
    deterministic: bool = True
    """greedy actions (True) or sampled ones"""
    sampled: bool = False
    """with greedy actions, also evaluate the agent with sampled ones (role `agent_sampled`, a
    '(sampled)' method in the report): a policy trained stochastically can loop when greedy
    (SeekAvoid, beta_vae frozen: source 4.4 greedy, 7.7 sampled)"""
    max_episode_steps: int | None = None
    """episode time limit; None keeps the one the policy was trained with"""
    n_envs: int = 4
    """parallel evaluation envs (episodes are seeded one by one, so results do not depend on it)"""
    vec: Literal["dummy", "subproc", "auto"] = "auto"
    """vectorisation of the evaluation envs"""
    device: str = "auto"
    """torch device for the policy and its vision model"""
    threads: int = 1
    """torch threads (0: all cores). 1, as for act: the env workers need the other core, and two
    transfers at 2 threads each on 2 cores spun at ~150 s per domain against ~13 s at 1 thread"""

    hash_exclude: ClassVar[tuple[str, ...]] = ("n_envs", "vec", "device", "threads")

    def validate(self) -> None:
        if self.episodes < 1:
            raise ConfigError(f"transfer episodes must be >= 1, got {self.episodes}")
        if self.n_envs < 1:
            raise ConfigError(f"transfer n_envs must be >= 1, got {self.n_envs}")
        if self.threads < 0:
            raise ConfigError(f"transfer threads must be >= 0, got {self.threads}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ConfigError(f"max_episode_steps must be >= 1 or None, got {self.max_episode_steps}")
        if self.sampled and not self.deterministic:
            raise ConfigError(
                "transfer sampled=True adds sampled actions to greedy ones: it needs deterministic=True"
            )
        if not self.splits:
            raise ConfigError(f"transfer splits must name at least one of {', '.join(SPLITS)}")
        for split in (*self.splits, *self.oracle_splits):
            check_choice("domain split", split, SPLITS)


@dataclass
class TransferConfig(TransferSettings):
    """Zero-shot evaluation of one act folder on the source, target and ood domains."""

    act: Path | None = None
    """act folder of the policy to evaluate, e.g. runs/exp1/act/beta_vae_dae/ppo/s0"""
    out: Path | None = None
    """run folder; results go to <out>/transfer/<the act folder's path below act/>. Default: the act folder's run"""
    oracle: Path | None = None
    """act folder of an oracle: the same kind of agent trained on the target domains (the ceiling)"""
    seed: int = 0
    """evaluation seed: fixes the episodes (identical for every policy) and the random floor's actions"""

    hash_exclude: ClassVar[tuple[str, ...]] = (*TransferSettings.hash_exclude, "out")

    @classmethod
    def of(cls, settings: TransferSettings, **identity: Any) -> TransferConfig:
        """The config of one transfer: shared settings plus what names it (act, out, oracle, seed)."""
        return cls(
            **{**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}, **identity}
        )


@dataclass
class _Plan:
    """A transfer resolved against the artifacts it reads: what to evaluate and where to write."""

    stage: StageDir
    cfg: TransferConfig
    family: EnvFamily
    act: ActArtifact
    oracle: ActArtifact | None
    rel: Path


def _plan(cfg: TransferConfig) -> _Plan:
    """Read the act (and oracle) artifacts, refuse a leak, resolve the time limit and the folder."""
    from darla.envs import get_family

    if cfg.act is None:
        raise ConfigError("transfer needs --act: the act folder of the policy to evaluate")
    act = ActArtifact.read(cfg.act)
    family = get_family(act.env)
    check_zero_shot(family.name, family.splits, act)
    oracle = ActArtifact.read(cfg.oracle) if cfg.oracle is not None else None
    if oracle is not None and oracle.env != family.name:
        raise ConfigError(
            f"oracle {oracle.path} was trained on env {oracle.env!r}, the policy on {family.name!r}"
        )
    located = act.location()
    if located is None and cfg.out is None:
        raise ConfigError(f"{act.path} is not inside an <run>/act/ folder: pass --out for the results")
    run, rel = located if located is not None else (Path(cfg.out or "."), Path(act.path.name))
    out = cfg.out or run
    # evaluate with the time limit the policy was trained with, unless told otherwise
    max_steps = cfg.max_episode_steps if cfg.max_episode_steps is not None else act.max_episode_steps
    resolved = dataclasses.replace(cfg, act=act.path, out=out, max_episode_steps=max_steps)
    inputs = {
        "act_hash": act.completion_hash,
        "oracle_hash": oracle.completion_hash if oracle is not None else "",
    }
    stage = StageDir(Path(out) / "transfer" / rel, resolved, inputs=inputs)
    return _Plan(stage, resolved, family, act, oracle, rel)


def transfer_dir(cfg: TransferConfig) -> Path:
    """Where `run_transfer(cfg)` writes its results (the act folder must exist)."""
    return _plan(cfg).stage.path


def is_transfer_done(cfg: TransferConfig) -> bool:
    """Whether `run_transfer(cfg)` would skip (done with this config and these upstream folders)."""
    try:
        return _plan(cfg).stage.is_done()
    except DarlaError:
        return False


def _policies(plan: _Plan) -> list[PolicyEval]:
    """The agent (greedy, and sampled if asked), the floor and the oracle; loading them refuses a
    damaged or crafted policy before anything is written."""
    from darla.agents import load_agent

    cfg, identity = plan.cfg, f"act:{plan.stage.inputs['act_hash']}"

    def agent(role: str, act: ActArtifact, ident: str, splits: tuple[str, ...], greedy: bool) -> PolicyEval:
        loaded = load_agent(act.path, device=cfg.device)
        return PolicyEval(
            role, ident, int(loaded.image_size), splits, agent_action_fn(loaded, greedy), greedy
        )

    policies = [agent("agent", plan.act, identity, tuple(cfg.splits), cfg.deterministic)]
    if cfg.sampled:
        policies.append(agent(SAMPLED_ROLE, plan.act, identity, tuple(cfg.splits), False))
    if cfg.random_floor:
        floor = random_action_fn(cfg.seed)
        policies.append(PolicyEval("random", "random", policies[0].size, tuple(cfg.splits), floor, False))
    if plan.oracle is not None:
        ident = f"act:{plan.stage.inputs['oracle_hash']}"
        policies.append(agent("oracle", plan.oracle, ident, tuple(cfg.oracle_splits), cfg.deterministic))
    return policies


def run_transfer(cfg: TransferConfig, pool: EnvPool | None = None) -> Path:
    """Evaluate one act folder zero-shot; returns the transfer folder holding results.json.

    `pool` shares evaluation envs between calls (see `EnvPool`); without one, envs are made
    for this call and closed at its end.
    """
    plan = _plan(cfg)
    stage, family, cfg = plan.stage, plan.family, plan.cfg
    if stage.is_done():
        logger.info("transfer %s: done with this config, skipped", stage.path)
        return stage.path
    setup_torch(cfg.threads)
    policies = _policies(plan)
    stage.lock()
    if stage.is_done():  # another process finished it while the policies loaded
        stage.unlock()
        return stage.path
    stage.prepare()
    assert cfg.out is not None
    domains = [(d, s) for s in cfg.splits for d in family.splits[s]]
    settings = EvalSettings(
        episodes=cfg.episodes,
        seed=cfg.seed,
        n_envs=cfg.n_envs,
        vec=cfg.vec,
        max_episode_steps=cfg.max_episode_steps,
        cache_dir=Path(cfg.out) / "transfer" / EPISODE_CACHE,
    )
    if pool is None:
        with EnvPool() as own:
            evals = evaluate_policies(family.name, domains, policies, settings, own)
    else:
        evals = evaluate_policies(family.name, domains, policies, settings, pool)
    meta = {
        **plan.act.describe(),
        "oracle": str(plan.oracle.path) if plan.oracle is not None else None,
        "oracle_policy": _who(plan.oracle.describe()) if plan.oracle is not None else None,
        "eval_seed": cfg.seed,
        "episodes": cfg.episodes,
        "deterministic": cfg.deterministic,
        "max_episode_steps": cfg.max_episode_steps,
        "family_splits": {s: list(family.splits[s]) for s in cfg.splits},
    }
    results = build_results(family, domains, evals, meta)
    atomic_write_json(stage.file(RESULTS_FILE), results)
    stage.mark_done()
    agent = results["policies"]["agent"]
    logger.info(
        "transfer %s: source %.3f, target %s, transfer ratio %s",
        plan.rel,
        agent["split_means"].get("source", math.nan),
        agent["split_means"].get("target"),
        agent.get("transfer_ratio"),
    )
    return stage.path


def _who(described: dict[str, Any]) -> dict[str, Any]:
    """What names a policy in a table: its vision model, mode, algorithm and readout."""
    return {
        k: v for k, v in described.items() if k in ("vision", "mode", "algo", "feature_layer", "feature_head")
    }


def _command(cfg: TransferConfig) -> dict[str, Any]:
    path = run_transfer(cfg)
    return {"path": str(path), "results": str(path / RESULTS_FILE), **summary(TransferResult.read(path).data)}


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) else "n/a"


def render(result: dict[str, Any]) -> str:
    lines = [
        f"transfer results: {result['results']}",
        f"{'policy':<8} " + " ".join(f"{s:>9}" for s in SPLITS),
    ]
    for role in ("agent", "sampled", "random", "oracle"):
        means = result["returns"] if role == "agent" else result.get(role)
        if means:
            lines.append(f"{role:<8} " + " ".join(f"{_fmt(means.get(s)):>9}" for s in SPLITS))
    lines.append(
        f"transfer ratio {_fmt(result['transfer_ratio'])}  gap {_fmt(result['gap'])}  "
        f"ood ratio {_fmt(result['ood_transfer_ratio'])}  ratio to oracle {_fmt(result['oracle_ratio'])}"
    )
    return "\n".join(lines)


COMMAND = Command(
    words=("transfer",),
    config=TransferConfig,
    run=_command,
    help="stage 3: zero-shot evaluation on target domains",
    render=render,
)

__all__ = ["COMMAND", "TransferConfig", "TransferSettings", "is_transfer_done", "run_transfer"]
