"""Stage 3, transfer: zero-shot evaluation of a trained policy on held-out domains.

`darla transfer --act runs/exp1/act/beta_vae_dae/ppo/s0` evaluates the policy, with no
retraining, on every source, target and out-of-distribution (ood) domain of its env family.
Every policy meets the *same* episodes: episode j of domain d starts from the seed
`derive_seed(seed, "transfer", d, j)`, whichever worker runs it, so returns are comparable
across policies, seeds and runs. A uniform-random policy on those episodes gives the floor; an
*oracle* (the same kind of agent trained on the target domains) gives the ceiling.

Zero-shot means the target domains were never seen: a policy or vision model whose config
names a target or ood domain is refused before anything runs.

Evaluations are cached per (policy, domain, episode settings) under `<out>/transfer/.episodes/`,
so the random floor and an oracle shared by several policies are computed once, and a killed
evaluation resumes domain by domain.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np

from darla.artifacts import CONFIG, DONE, StageDir, atomic_write_json, read_json
from darla.cli import Command
from darla.config import config_hash, load_yaml
from darla.errors import ArtifactError, ConfigError, DarlaError
from darla.log import progress
from darla.pipelines.stats import safe_ratio
from darla.registry import check_choice
from darla.seeding import derive_seed, make_rng, seed_everything

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

    from darla.envs import EnvFamily

logger = logging.getLogger(__name__)

RESULTS = "results.json"
SPLITS = ("source", "target", "ood")
EPISODE_CACHE = ".episodes"
SAMPLED = "agent_sampled"
"""results role of the agent evaluated with sampled actions (transfer `sampled`)"""


@dataclass
class TransferConfig:
    """Zero-shot evaluation of one act folder on the source, target and ood domains."""

    act: Path | None = None
    """act folder of the policy to evaluate, e.g. runs/exp1/act/beta_vae_dae/ppo/s0"""
    out: Path | None = None
    """run folder; results go to <out>/transfer/<the act folder's path below act/>. Default: the act folder's run"""
    episodes: int = 50
    """evaluation episodes per domain and policy (20 proved too noisy)"""
    seed: int = 0
    """evaluation seed: fixes the episodes (identical for every policy) and the random floor's actions"""
    splits: tuple[str, ...] = SPLITS
    """domain splits to evaluate on"""
    random_floor: bool = True
    """also evaluate a uniform-random policy on the same episodes (the floor)"""
    oracle: Path | None = None
    """act folder of an oracle: the same kind of agent trained on the target domains (the ceiling)"""
    oracle_splits: tuple[str, ...] = ("target",)
    """splits the oracle is evaluated on (it is a ceiling only where it was trained)"""
    deterministic: bool = True
    """greedy actions (True) or sampled ones"""
    sampled: bool = False
    """with greedy actions, also evaluate the agent with sampled ones (role `agent_sampled`, a
    '(sampled)' method in the report): a policy trained stochastically can loop when greedy
    (SeekAvoid, beta_vae frozen: source 4.4 greedy, 7.7 sampled)"""
    max_episode_steps: int | None = None
    """episode time limit; None keeps the env family's default"""
    n_envs: int = 4
    """parallel evaluation envs (episodes are seeded one by one, so results do not depend on it)"""
    vec: Literal["dummy", "subproc", "auto"] = "auto"
    """vectorisation of the evaluation envs"""
    device: str = "auto"
    """torch device for the policy and its vision model"""
    threads: int = 1
    """torch threads (0: all cores). 1, as for act: the env workers need the other core, and two
    transfers at 2 threads each on 2 cores spun at ~150 s per domain against ~13 s at 1 thread"""
    act_hash: str = ""
    """set by transfer itself: the act folder's completion hash, so a retrained policy is re-evaluated"""
    oracle_hash: str = ""
    """set by transfer itself: the oracle act folder's completion hash"""

    hash_exclude: ClassVar[tuple[str, ...]] = ("out", "n_envs", "vec", "device", "threads")

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


# ----------------------------------------------------------------------------- act folders
def completion_hash(stage_dir: Path) -> str:
    """Identity of a finished stage: its config hash plus when it finished.

    A stage re-run (even with the same config, e.g. after its marker was lost) yields a new
    identity, so what was computed from its outputs is recomputed rather than trusted stale.
    """
    marker = stage_dir / DONE
    if not marker.is_file():
        raise ArtifactError(f"{stage_dir} is not finished (no {DONE}); run its stage first")
    done = read_json(marker)
    return f"{done.get('config_hash', '')}@{done.get('finished_at', '')}"


def read_act_config(act_dir: Path) -> dict[str, Any]:
    """The raw config mapping of an act folder (raw, so transfer does not depend on ActConfig's fields)."""
    if not act_dir.is_dir():
        raise ArtifactError(f"act folder not found: {act_dir}")
    if not (act_dir / CONFIG).is_file():
        raise ArtifactError(f"{act_dir} holds no {CONFIG}: not a darla act folder")
    data = load_yaml(act_dir / CONFIG)
    if not isinstance(data, dict) or not data.get("env"):
        raise ArtifactError(f"{act_dir / CONFIG} names no env: not a darla act folder")
    if "algo" not in data:
        kind = "a see folder (a vision model)" if "model" in data else "not an act folder"
        raise ArtifactError(
            f"{act_dir} is {kind}: transfer evaluates a policy, so --act takes an act folder, e.g. "
            "<run>/act/<vision>/<algo>/s<seed> (made by `darla act` or `darla run`)"
        )
    return data


def see_folder_of(act_raw: dict[str, Any]) -> Path | None:
    """The see folder an act config names (field `see`: the folder or its checkpoint), if any."""
    return _folder(act_raw.get("see"))


def _domain_names(value: Any, known: set[str]) -> Iterator[str]:
    """Names of the family's domains mentioned in a config value (names or specs, nested)."""
    if isinstance(value, str):
        if value in known:
            yield value
    elif isinstance(value, dict):
        name = value.get("name")
        if isinstance(name, str) and name in known:
            yield name
        for key, item in value.items():
            if key != "name":
                yield from _domain_names(item, known)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _domain_names(item, known)


def domains_seen(config: dict[str, Any], known: set[str]) -> set[str]:
    """Every domain a stage config exposes its stage to: values under any key naming 'domain'."""
    seen: set[str] = set()
    for key, value in config.items():
        if "domain" in key.lower():
            seen.update(_domain_names(value, known))
        elif isinstance(value, dict):
            seen.update(domains_seen(value, known))
    return seen


def _folder(ref: Any) -> Path | None:
    from darla.vision import see_folder

    return see_folder(str(ref)) if ref and isinstance(ref, (str, Path)) else None


def upstream_folders(see_raw: dict[str, Any]) -> list[Path]:
    """See folders a vision model was built from (`upstream_refs` of its recorded see config)."""
    from darla.pipelines.see import upstream_refs

    params = dict(see_raw.get("params") or {})
    model_params = see_raw.get("model_params") or {}
    if isinstance(model_params, dict):
        params = {**dict(model_params.get(see_raw.get("model"), {}) or {}), **params}
    return [f for f in (_folder(r) for r in upstream_refs(params, see_raw.get("dae_path"))) if f is not None]


def check_zero_shot(family: EnvFamily, act_dir: Path, act_raw: dict[str, Any]) -> None:
    """Refuse a policy, or a vision model it sees through (and what that was built on), that saw a
    target or ood domain."""
    held_out = {d: s for s in ("target", "ood") for d in family.splits.get(s, ())}
    known = set(family.domains)
    stages: list[tuple[str, Path, dict[str, Any]]] = [("policy", act_dir, act_raw)]
    pending = [(f"vision model of {act_dir}", d) for d in [see_folder_of(act_raw)] if d is not None]
    # a cloned policy (act --expert) learned from its expert's experience too, and so on up
    policy_dir, policy_raw = act_dir, act_raw
    while policy_raw.get("expert"):
        expert_dir = Path(str(policy_raw["expert"]))
        if any(expert_dir.resolve() == p.resolve() for _, p, _ in stages):
            break
        try:
            policy_raw = read_act_config(expert_dir)
        except ArtifactError as exc:
            raise ArtifactError(
                f"the expert {expert_dir} that {policy_dir} was cloned from is unreadable ({exc}): "
                "cannot check that it never saw a target domain"
            ) from None
        policy_dir = expert_dir
        stages.append((f"expert of {act_dir}", expert_dir, policy_raw))
        pending.extend(
            (f"vision model of {expert_dir}", d) for d in [see_folder_of(policy_raw)] if d is not None
        )
    visited: set[Path] = set()
    while pending:
        what, see_dir = pending.pop()
        if see_dir.resolve() in visited:
            continue
        visited.add(see_dir.resolve())
        if not (see_dir / CONFIG).is_file():
            raise ArtifactError(
                f"the {what} ({see_dir}) has no {CONFIG}: cannot check that it never saw a target domain"
            )
        see_raw = load_yaml(see_dir / CONFIG)
        if not isinstance(see_raw, dict):
            continue
        if see_raw.get("env") not in (None, family.name):
            raise ConfigError(
                f"the vision model {see_dir} was trained on env {see_raw.get('env')!r}, "
                f"the policy {act_dir} on {family.name!r}"
            )
        stages.append(("vision model", see_dir, see_raw))
        pending.extend((f"model {see_dir} was built on", up) for up in upstream_folders(see_raw))
    for what, path, raw in stages:
        leaked = sorted(domains_seen(raw, known) & set(held_out))
        if leaked:
            names = ", ".join(f"{d} ({held_out[d]})" for d in leaked)
            raise ConfigError(
                f"the {what} {path} saw held-out domain(s) {names}: its evaluation there would not be "
                f"zero-shot. Train it on source domains only: {', '.join(family.splits['source'])}"
            )


def locate(act_dir: Path, out: Path | None) -> tuple[Path, Path]:
    """(run folder, sub-path) of an act folder: <run>/act/<sub-path> -> <run>/transfer/<sub-path>."""
    parts = act_dir.parts
    if "act" in parts:
        i = len(parts) - 1 - parts[::-1].index("act")
        rel = Path(*parts[i + 1 :]) if i + 1 < len(parts) else Path(act_dir.name)
        run_dir = Path(*parts[:i]) if i > 0 else Path(".")
        return (out or run_dir), rel
    if out is None:
        raise ConfigError(f"{act_dir} is not inside an <run>/act/ folder: pass --out for the results")
    return out, Path(act_dir.name)


# ----------------------------------------------------------------------------- episodes
@dataclass(frozen=True)
class Episode:
    """One evaluation episode: a domain and a start seed, the same for every policy."""

    domain: str
    index: int
    seed: int


def episodes_for(seed: int, domain: str, n: int) -> list[Episode]:
    """The fixed evaluation episodes of a domain: episode j starts from derive_seed(seed, 'transfer', domain, j)."""
    return [Episode(domain, j, derive_seed(seed, "transfer", domain, j)) for j in range(n)]


class ActionFn(Protocol):
    def __call__(self, obs: np.ndarray, jobs: np.ndarray) -> np.ndarray:
        """Actions for a batch of observations; `jobs[i]` is worker i's episode (an index, -1 idle)."""
        ...


def run_episodes(
    venv: VecEnv,
    episodes: Sequence[Episode],
    act: ActionFn,
    on_episode: Callable[[int, float, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Play every episode on a vec env; (returns, lengths) indexed like `episodes`.

    A worker is reset into the next episode's domain with its seed as soon as it finishes (the
    vec env's own unseeded auto-reset is overridden), so an episode is the same whichever worker
    plays it, and all workers stay busy until the last episode. `on_episode(index, return, length)` is
    called as each episode ends.
    """
    n_jobs = len(episodes)
    n = venv.num_envs
    if n > n_jobs:
        raise ConfigError(f"{n} envs for {n_jobs} episodes: use at most one env per episode")
    returns = np.zeros(n_jobs, dtype=np.float64)
    lengths = np.zeros(n_jobs, dtype=np.int64)
    jobs = np.full(n, -1, dtype=np.int64)
    next_job = 0

    def start(i: int) -> np.ndarray:
        nonlocal next_job
        ep = episodes[next_job]
        first_obs, _info = venv.env_method("reset", seed=ep.seed, options={"domain": ep.domain}, indices=[i])[
            0
        ]
        jobs[i] = next_job
        next_job += 1
        return np.asarray(first_obs)

    obs = np.stack([start(i) for i in range(n)])
    while (jobs >= 0).any():
        actions = act(obs, jobs.copy())
        step_obs, rewards, dones, _infos = venv.step(np.asarray(actions))
        obs = np.array(step_obs, copy=True)
        for i in map(int, np.flatnonzero(jobs >= 0)):
            job = int(jobs[i])
            returns[job] += float(rewards[i])
            lengths[job] += 1
            if dones[i]:
                if on_episode is not None:
                    on_episode(job, float(returns[job]), int(lengths[job]))
                if next_job < n_jobs:
                    obs[i] = start(i)
                else:
                    jobs[i] = -1
    return returns, lengths


def agent_action_fn(agent: Any, deterministic: bool) -> Callable[[Sequence[Episode], int], ActionFn]:
    def make(episodes: Sequence[Episode], n_actions: int) -> ActionFn:
        def act(obs: np.ndarray, jobs: np.ndarray) -> np.ndarray:
            return np.asarray(agent.predict(obs, deterministic=deterministic))

        return act

    return make


def random_action_fn(seed: int) -> Callable[[Sequence[Episode], int], ActionFn]:
    """Uniform actions from one RNG per episode, so the floor does not depend on scheduling."""

    def make(episodes: Sequence[Episode], n_actions: int) -> ActionFn:
        rngs = [make_rng(seed, "random", ep.domain, ep.index) for ep in episodes]

        def act(obs: np.ndarray, jobs: np.ndarray) -> np.ndarray:
            actions = np.zeros(len(jobs), dtype=np.int64)
            for i, job in enumerate(jobs):
                if job >= 0:
                    actions[i] = rngs[job].integers(n_actions)
            return actions

        return act

    return make


# ----------------------------------------------------------------------------- evaluation plan
@dataclass(frozen=True)
class EpisodeKey:
    """Everything that decides one policy's returns on one domain: the cache key."""

    env: str
    domain: str
    policy: str
    """'random', or 'act:<completion hash>' of an act folder"""
    episodes: int
    seed: int
    size: int
    max_episode_steps: int | None
    deterministic: bool


@dataclass
class PolicyEval:
    """A policy to evaluate: its role, cache identity, image size and how to build its actions."""

    role: str
    identity: str
    size: int
    splits: tuple[str, ...]
    make_act: Callable[[Sequence[Episode], int], ActionFn] = field(repr=False)
    """(episodes, n_actions) -> action function"""
    deterministic: bool = True


def _cache_path(out: Path, key: EpisodeKey) -> Path:
    return out / "transfer" / EPISODE_CACHE / f"{key.domain}-{config_hash(key)}.json"


def _load_cached(path: Path, key: EpisodeKey) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except ArtifactError:
        return None
    if not isinstance(data, dict) or data.get("key") != dataclasses.asdict(key):
        return None
    return data


class _Collector:
    """Gathers one policy's finished episodes per domain; caches a domain as soon as it is complete."""

    def __init__(
        self,
        episodes: Sequence[Episode],
        missing: Sequence[tuple[str, EpisodeKey, Path]],
        per_domain: int,
        role: str,
        sink: dict[str, dict[str, Any]],
        bar: Any,
    ) -> None:
        self.episodes = episodes
        self.keys = {d: (key, path) for d, key, path in missing}
        self.pending = {d: per_domain for d in self.keys}
        self.returns = {d: np.zeros(per_domain) for d in self.keys}
        self.lengths = {d: np.zeros(per_domain, dtype=np.int64) for d in self.keys}
        self.role = role
        self.sink = sink
        self.bar = bar

    def __call__(self, job: int, ret: float, length: int) -> None:
        ep = self.episodes[job]
        self.returns[ep.domain][ep.index] = ret
        self.lengths[ep.domain][ep.index] = length
        self.pending[ep.domain] -= 1
        self.bar.update(1)
        if self.pending[ep.domain] == 0:
            key, path = self.keys[ep.domain]
            record = {
                "key": dataclasses.asdict(key),
                "returns": self.returns[ep.domain].tolist(),
                "lengths": self.lengths[ep.domain].tolist(),
            }
            atomic_write_json(path, record)
            self.sink[ep.domain] = record
            logger.info(
                "%s on %s: mean return %.3f over %d episodes",
                self.role,
                ep.domain,
                float(self.returns[ep.domain].mean()),
                len(self.returns[ep.domain]),
            )


class EnvPool:
    """Evaluation vec envs kept open across policies and transfers.

    Starting workers and loading each domain's textures costs seconds per worker; a run that
    evaluates many policies shares one pool, so that cost is paid once. Reusing a worker is
    safe because every episode starts with an explicit seed and domain.
    """

    def __init__(self) -> None:
        self._envs: dict[tuple[Any, ...], VecEnv] = {}

    def get(
        self,
        family: str,
        domains: Sequence[str],
        n_envs: int,
        *,
        size: int,
        vec: str,
        max_episode_steps: int | None,
    ) -> VecEnv:
        from darla.envs import make_vec_env

        key = (family, tuple(domains), n_envs, size, vec, max_episode_steps)
        if key not in self._envs:
            self._envs[key] = make_vec_env(
                family,
                list(domains),
                n_envs,
                seed=derive_seed(0, "transfer-vec"),
                size=size,
                vec=vec,
                # every reset names its episode's domain: workers are not tied to one domain
                domain_mode="per_episode",
                max_episode_steps=max_episode_steps,
            )
        return self._envs[key]

    def close(self) -> None:
        for venv in self._envs.values():
            venv.close()
        self._envs.clear()

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evaluate_policies(
    family: EnvFamily,
    domains: Sequence[tuple[str, str]],
    policies: Sequence[PolicyEval],
    cfg: TransferConfig,
    out: Path,
    max_episode_steps: int | None,
    pool: EnvPool,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Returns of every policy on every (domain, split) it applies to: role -> domain -> record.

    One vec env per image size serves every domain (workers switch domain at reset); each
    domain's record is cached as soon as its episodes are complete.
    """
    results: dict[str, dict[str, dict[str, Any]]] = {p.role: {} for p in policies}
    todo: list[tuple[PolicyEval, list[tuple[str, EpisodeKey, Path]]]] = []
    for policy in policies:
        missing = []
        for domain, split in domains:
            if split not in policy.splits:
                continue
            key = EpisodeKey(
                env=family.name,
                domain=domain,
                policy=policy.identity,
                episodes=cfg.episodes,
                seed=cfg.seed,
                size=policy.size,
                max_episode_steps=max_episode_steps,
                deterministic=policy.deterministic,
            )
            path = _cache_path(out, key)
            cached = _load_cached(path, key)
            if cached is not None:
                results[policy.role][domain] = cached
            else:
                missing.append((domain, key, path))
        if missing:
            todo.append((policy, missing))
    if not todo:
        return results

    total = sum(len(missing) for _, missing in todo) * cfg.episodes
    bar = progress(total=total, desc="transfer", unit="ep")
    try:
        for policy, missing in todo:
            venv = pool.get(
                family.name,
                [d for d, _ in domains],
                min(cfg.n_envs, cfg.episodes),
                size=policy.size,
                vec=cfg.vec,
                max_episode_steps=max_episode_steps,
            )
            # Domain by domain: a worker loads a domain's textures once, and each domain's
            # record is complete (and cached) early, so a killed evaluation loses little.
            episodes = [ep for d, _, _ in missing for ep in episodes_for(cfg.seed, d, cfg.episodes)]
            collect = _Collector(episodes, missing, cfg.episodes, policy.role, results[policy.role], bar)
            bar.set_postfix_str(policy.role)
            n_actions = int(venv.action_space.n)  # type: ignore[attr-defined]
            seed_everything(derive_seed(cfg.seed, "transfer", policy.role))
            run_episodes(venv, episodes, policy.make_act(episodes, n_actions), on_episode=collect)
    finally:
        bar.close()
    return results


# ----------------------------------------------------------------------------- summaries
def _stats(returns: Sequence[float]) -> dict[str, Any]:
    x = np.asarray(returns, dtype=np.float64)
    return {
        "returns": x.tolist(),
        "mean": float(x.mean()) if x.size else None,
        "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "episodes": int(x.size),
    }


def _nan_to_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def policy_metrics(
    split_means: dict[str, float], floor: dict[str, float], oracle: dict[str, float]
) -> dict[str, float | None]:
    """Transfer ratio, generalisation gap, ratio to the oracle, for target and ood.

    The *normalised* versions measure return above the random floor, so a ratio is not
    flattered by the reward a random walk collects anyway.
    """
    out: dict[str, float | None] = {}
    source = split_means.get("source", math.nan)
    for split, prefix in (("target", ""), ("ood", "ood_")):
        value = split_means.get(split, math.nan)
        out[f"{prefix}transfer_ratio"] = _nan_to_none(safe_ratio(value, source))
        out[f"{prefix}gap"] = _nan_to_none(source - value)
        out[f"{prefix}normalized_transfer_ratio"] = _nan_to_none(
            safe_ratio(value - floor.get(split, math.nan), source - floor.get("source", math.nan))
        )
        out[f"{prefix}oracle_ratio"] = _nan_to_none(safe_ratio(value, oracle.get(split, math.nan)))
        out[f"{prefix}normalized_oracle_ratio"] = _nan_to_none(
            safe_ratio(
                value - floor.get(split, math.nan), oracle.get(split, math.nan) - floor.get(split, math.nan)
            )
        )
    return out


def _difficulty(family: EnvFamily, domain: str) -> Any:
    try:
        spec = family.domain(domain)
    except Exception:  # the family may not resolve every name the same way; difficulty is optional
        return None
    value = getattr(spec, "difficulty", None)
    return value if isinstance(value, (int, float, str)) or value is None else str(value)


def build_results(
    family: EnvFamily,
    domains: Sequence[tuple[str, str]],
    evals: dict[str, dict[str, dict[str, Any]]],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """The results.json document: per domain returns and stats, per split and per policy summaries."""
    per_domain: dict[str, Any] = {}
    for domain, split in domains:
        entry: dict[str, Any] = {"split": split, "difficulty": _difficulty(family, domain)}
        for role, by_domain in evals.items():
            if domain in by_domain:
                rec = by_domain[domain]
                stats = _stats(rec["returns"])
                stats["mean_length"] = float(np.mean(rec["lengths"])) if rec["lengths"] else None
                entry[role] = stats
        if "agent" in entry:
            entry["mean"] = entry["agent"]["mean"]
            entry["std"] = entry["agent"]["std"]
        entry["random_mean"] = entry["random"]["mean"] if "random" in entry else None
        entry["oracle_mean"] = entry["oracle"]["mean"] if "oracle" in entry else None
        per_domain[domain] = entry

    split_names = [s for s in SPLITS if any(sp == s for _, sp in domains)]
    split_means: dict[str, dict[str, float]] = {}
    for role, by_domain in evals.items():
        means: dict[str, float] = {}
        for split in split_names:
            vals = [np.mean(by_domain[d]["returns"]) for d, s in domains if s == split and d in by_domain]
            if vals:
                means[split] = float(np.mean(vals))
        split_means[role] = means
    floor = split_means.get("random", {})
    oracle = split_means.get("oracle", {})
    policies: dict[str, Any] = {}
    for role, means in split_means.items():
        entry = {"split_means": means}
        entry.update(policy_metrics(means, floor, oracle if role != "oracle" else {}))
        policies[role] = entry
    splits = {
        split: {
            "domains": [d for d, s in domains if s == split],
            "mean": split_means.get("agent", {}).get(split),
            "random_mean": floor.get(split),
            "oracle_mean": oracle.get(split),
        }
        for split in split_names
    }
    return {**meta, "domains": per_domain, "splits": splits, "policies": policies}


# ----------------------------------------------------------------------------- the stage
def _agent_eval(
    role: str,
    act_dir: Path,
    cfg: TransferConfig,
    identity: str,
    splits: tuple[str, ...],
    deterministic: bool | None = None,
) -> PolicyEval:
    from darla.agents import load_agent

    greedy = cfg.deterministic if deterministic is None else deterministic
    agent = load_agent(act_dir, device=cfg.device)
    return PolicyEval(role, identity, int(agent.image_size), splits, agent_action_fn(agent, greedy), greedy)


def describe_act(act_dir: Path, act_raw: dict[str, Any]) -> dict[str, Any]:
    """Who the policy is, for tables: vision model name (or 'pixels'), mode, algo, seed."""
    see_dir = see_folder_of(act_raw)
    vision = "pixels"
    if act_raw.get("mode") != "pixels" and act_raw.get("vision_model"):
        vision = str(act_raw["vision_model"])
    elif see_dir is not None and act_raw.get("mode") != "pixels":
        vision = see_dir.name
        if (see_dir / CONFIG).is_file():
            see_raw = load_yaml(see_dir / CONFIG)
            if isinstance(see_raw, dict) and see_raw.get("model"):
                vision = str(see_raw["model"])
    described = {
        "act": str(act_dir),
        "env": act_raw.get("env"),
        "vision": vision,
        "mode": act_raw.get("mode", "pixels" if see_dir is None else None),
        "algo": act_raw.get("algo"),
        "agent_seed": act_raw.get("seed"),
    }
    if act_raw.get("expert"):
        described["expert"] = str(act_raw["expert"])  # trained by cloning it, not by RL
    return {**described, **policy_reads(act_raw)}


def policy_reads(act_raw: dict[str, Any]) -> dict[str, str]:
    """What a frozen policy reads (`feature_layer`, `feature_head`), where it is not the default."""
    return {
        k: str(act_raw[k])
        for k in ("feature_layer", "feature_head")
        if act_raw.get(k) not in (None, "", "mlp")
    }


def transfer_dir(cfg: TransferConfig) -> Path:
    """Where `run_transfer(cfg)` writes its results."""
    if cfg.act is None:
        raise ConfigError("transfer needs --act: the act folder of the policy to evaluate")
    out, rel = locate(Path(cfg.act), cfg.out)
    return out / "transfer" / rel


@dataclass
class _Plan:
    """A transfer resolved against the folders it reads: what to evaluate and where to write."""

    stage: StageDir
    cfg: TransferConfig
    family: EnvFamily
    act_dir: Path
    act_raw: dict[str, Any]
    oracle_dir: Path | None
    rel: Path


def _plan(cfg: TransferConfig) -> _Plan:
    """Check the act (and oracle) folders and resolve the config (upstream hashes, time limit)."""
    from darla.envs import get_family

    if cfg.act is None:
        raise ConfigError("transfer needs --act: the act folder of the policy to evaluate")
    act_dir = Path(cfg.act)
    act_raw = read_act_config(act_dir)
    family = get_family(str(act_raw["env"]))
    check_zero_shot(family, act_dir, act_raw)
    act_hash = completion_hash(act_dir)
    oracle_dir = Path(cfg.oracle) if cfg.oracle is not None else None
    if oracle_dir is not None:
        oracle_raw = read_act_config(oracle_dir)
        if oracle_raw.get("env") != family.name:
            raise ConfigError(
                f"oracle {oracle_dir} was trained on env {oracle_raw.get('env')!r}, the policy on {family.name!r}"
            )
    out, rel = locate(act_dir, cfg.out)
    # Evaluate with the time limit the policy was trained with, unless told otherwise.
    max_steps = (
        cfg.max_episode_steps if cfg.max_episode_steps is not None else act_raw.get("max_episode_steps")
    )
    resolved = dataclasses.replace(
        cfg,
        act=act_dir,
        out=out,
        max_episode_steps=max_steps,
        act_hash=act_hash,
        oracle_hash=completion_hash(oracle_dir) if oracle_dir is not None else "",
    )
    stage = StageDir(out / "transfer" / rel, resolved)
    return _Plan(stage, resolved, family, act_dir, act_raw, oracle_dir, rel)


def is_transfer_done(cfg: TransferConfig) -> bool:
    """Whether `run_transfer(cfg)` would skip (done with this config and these upstream folders)."""
    try:
        return _plan(cfg).stage.is_done()
    except DarlaError:
        return False


def run_transfer(cfg: TransferConfig, pool: EnvPool | None = None) -> Path:
    """Evaluate one act folder zero-shot; returns the transfer folder holding results.json.

    `pool` shares evaluation envs between calls (see `EnvPool`); without one, envs are made
    for this call and closed at its end.
    """
    from darla.runtime import setup_torch

    plan = _plan(cfg)
    stage, family, act_dir, oracle_dir, cfg = plan.stage, plan.family, plan.act_dir, plan.oracle_dir, plan.cfg
    assert cfg.out is not None  # resolved by _plan
    out, max_steps = Path(cfg.out), cfg.max_episode_steps
    stage.lock()
    if stage.is_done():
        logger.info("transfer %s: done with this config, skipped", stage.path)
        stage.unlock()
        return stage.path
    stage.prepare()
    setup_torch(cfg.threads)

    domains = [(d, s) for s in cfg.splits for d in family.splits[s]]
    policies = [_agent_eval("agent", act_dir, cfg, f"act:{cfg.act_hash}", tuple(cfg.splits))]
    if cfg.sampled:
        policies.append(
            _agent_eval(SAMPLED, act_dir, cfg, f"act:{cfg.act_hash}", tuple(cfg.splits), deterministic=False)
        )
    if cfg.random_floor:
        policies.append(
            PolicyEval(
                "random", "random", policies[0].size, tuple(cfg.splits), random_action_fn(cfg.seed), False
            )
        )
    if oracle_dir is not None:
        policies.append(
            _agent_eval("oracle", oracle_dir, cfg, f"act:{cfg.oracle_hash}", tuple(cfg.oracle_splits))
        )
    if pool is None:
        with EnvPool() as own:
            evals = evaluate_policies(family, domains, policies, cfg, out, max_steps, own)
    else:
        evals = evaluate_policies(family, domains, policies, cfg, out, max_steps, pool)
    meta = {
        **describe_act(act_dir, plan.act_raw),
        "oracle": str(oracle_dir) if oracle_dir is not None else None,
        "eval_seed": cfg.seed,
        "episodes": cfg.episodes,
        "deterministic": cfg.deterministic,
        "max_episode_steps": max_steps,
        "family_splits": {s: list(family.splits[s]) for s in cfg.splits},
    }
    results = build_results(family, domains, evals, meta)
    atomic_write_json(stage.file(RESULTS), results)
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


def load_results(transfer_folder: Path) -> dict[str, Any]:
    path = Path(transfer_folder) / RESULTS
    data = read_json(path)
    if not isinstance(data, dict) or "domains" not in data:
        raise ArtifactError(f"{path} is not a darla transfer results file")
    return data


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one results.json (what the CLI prints)."""
    policies = results["policies"]
    agent = policies["agent"]
    return {
        "vision": results.get("vision"),
        "mode": results.get("mode"),
        "algo": results.get("algo"),
        "seed": results.get("agent_seed"),
        "returns": agent["split_means"],
        "random": policies.get("random", {}).get("split_means"),
        "oracle": policies.get("oracle", {}).get("split_means"),
        "sampled": policies.get(SAMPLED, {}).get("split_means"),
        "sampled_transfer_ratio": policies.get(SAMPLED, {}).get("transfer_ratio"),
        "transfer_ratio": agent.get("transfer_ratio"),
        "ood_transfer_ratio": agent.get("ood_transfer_ratio"),
        "gap": agent.get("gap"),
        "oracle_ratio": agent.get("oracle_ratio"),
    }


def _command(cfg: TransferConfig) -> dict[str, Any]:
    path = run_transfer(cfg)
    return {"path": str(path), "results": str(path / RESULTS), **summary(load_results(path))}


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
