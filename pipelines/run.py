"""`darla run`: see -> act -> (oracle) -> transfer -> report, in one resumable command.

`darla run --env SeekAvoid --preset quick --out runs/quick` trains every vision model of the
preset, every policy (vision model x mode x algorithm x seed; `pixels` needs no vision model),
the target-domain oracles where asked, evaluates every policy zero-shot and writes the report.

Every stage writes its own folder and is skipped when it is done with an unchanged config; a
changed config re-runs that stage and, because each downstream config records its upstream
(act records the vision checkpoint's hash, transfer the act folder's completion hash),
everything that depends on it. A killed run continues where it stopped: finished stages are
skipped, an interrupted act resumes from its checkpoint. Each stage's outcome (ran / skipped,
seconds) is appended to `<out>/run_log.jsonl`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from darla.agents.config import LATENT, ActConfig, parse_readout, readout_name
from darla.artifacts import DONE, StageDir, atomic_write_text
from darla.cli import Command
from darla.config import dump_yaml, from_dict, to_dict
from darla.errors import ConfigError
from darla.log import setup_logging
from darla.pipelines.report import ReportConfig, read_headline, render_table, write_report
from darla.pipelines.see import SeeConfig
from darla.pipelines.transfer import (
    EnvPool,
    TransferConfig,
    is_transfer_done,
    run_transfer,
    transfer_dir,
)
from darla.registry import unknown_name_message
from darla.runtime import Terminated, exit_with_parent, num_cores

logger = logging.getLogger(__name__)

RUN_LOG = "run_log.jsonl"
RUN_CONFIG = "run.yaml"


@dataclass
class RunActConfig(ActConfig):
    """Act settings shared by every policy of the run. `run` sets env, see, mode, algo, seed, out,
    name and domains per policy; the rest (timesteps, n_envs, hparams, ...) applies to all."""

    def validate(self) -> None:
        # The see folder and mode are filled in per policy; check everything else now.
        probe = copy.copy(self)
        probe.mode, probe.see = "pixels", None
        ActConfig.validate(probe)


@dataclass
class RunConfig:
    """Run all stages for every vision model x mode x algorithm x seed, then the report."""

    env: str = "SeekAvoid"
    """env family"""
    out: Path = Path("runs/quick")
    """run folder (see/, act/, oracle/, transfer/, report/)"""
    seed: int = 0
    """seed of the vision models and of the evaluation episodes (policies use `seeds`)"""
    models: tuple[str, ...] = ("beta_vae_dae",)
    """vision models to train (see stage), used by the modes that need one"""
    modes: tuple[str, ...] = ("frozen", "finetune", "pixels")
    """act modes: frozen (DARLA), finetune (DARLA_FT), pixels (end-to-end baseline)"""
    model_modes: dict[str, list[str]] = field(default_factory=dict)
    """per-model subset of `modes` (e.g. beta_vae='[frozen]' for an ablation without finetune);
    a model not named here gets every mode; entries for zoo models the run does not train are ignored"""
    readouts: tuple[str, ...] = ()
    """what the frozen policies read, one set of policies (and oracles) per entry: 'latent' (DARLA's
    code), an encoder layer ('conv1', 'fc'), '+cnn' for a conv head on a layer's map ('conv1+cnn');
    e.g. `--readouts latent conv1+cnn` compares them on the same vision model. Empty: act's
    feature_layer and feature_head"""
    algos: tuple[str, ...] = ("ppo",)
    """RL algorithms"""
    seeds: tuple[int, ...] = (0, 1, 2)
    """policy seeds (one act run per vision model x mode x algo x seed)"""
    oracle: bool = True
    """also train oracles (the same agents on the target domains) as the transfer ceiling"""
    oracle_modes: tuple[str, ...] = ()
    """modes that get an oracle (default: every mode; modes the run does not train are left out); a
    method without one uses an oracle of its algo whose features train as its own do (finetune:
    the pixels oracle), else the first of its algo"""
    oracle_seeds: tuple[int, ...] = ()
    """seeds of the oracles (default: the first of `seeds`)"""
    probe_frames: int = 400
    """frames per domain for `darla probe` of every vision model (linear probes of the objects'
    bearings, fitted on the sources, scored per domain; in the report); 0: no probe"""
    report: bool = True
    """write the report at the end"""
    jobs: int = 1
    """act, oracle and transfer stages run at once, each in its own process (0: one per core). They
    are independent, and one PPO on 64x64 frames keeps about one core busy, so 2 jobs on 2 cores
    nearly halve those stages' time; results do not depend on it"""
    see: SeeConfig = field(default_factory=SeeConfig)
    """see-stage settings (env, model, out and seed are set by run)"""
    act: RunActConfig = field(default_factory=RunActConfig)
    """act-stage settings shared by every policy"""
    transfer: TransferConfig = field(default_factory=TransferConfig)
    """transfer settings (act, out, oracle and seed are set by run)"""

    hash_exclude: ClassVar[tuple[str, ...]] = ("out", "jobs")

    def validate(self) -> None:
        from darla.agents import ALGOS, MODES
        from darla.agents.factory import check_hyperparams
        from darla.envs import get_family
        from darla.vision import MODELS

        get_family(self.env)
        for name, values, registry in (
            ("models", self.models, MODELS),
            ("modes", self.modes, MODES),
            ("algos", self.algos, ALGOS),
        ):
            if len(set(values)) != len(values):
                raise ConfigError(f"run {name} must not repeat, got {list(values)}")
            for value in values:
                registry.get(value)
        if len(set(self.readouts)) != len(self.readouts):
            raise ConfigError(f"run readouts must not repeat, got {list(self.readouts)}")
        for spec in self.readouts:
            parse_readout(spec)
        if self.probe_frames < 0 or 0 < self.probe_frames < 8:
            raise ConfigError(f"probe_frames must be 0 (no probe) or >= 8, got {self.probe_frames}")
        if self.jobs < 0:
            raise ConfigError(f"jobs must be >= 0 (0: one per core), got {self.jobs}")
        if not self.modes or not self.algos or not self.seeds:
            raise ConfigError("run needs at least one mode, one algo and one seed")
        if any(MODES.get(m).needs_vision for m in self.modes) and not self.models:
            raise ConfigError(f"modes {list(self.modes)} need a vision model: set models")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"run seeds must not repeat, got {list(self.seeds)}")
        for model, modes in self.model_modes.items():
            MODELS.get(model)  # a typo is an error; a zoo model the run does not train is ignored
            if isinstance(modes, str) or not isinstance(modes, (list, tuple)):
                raise ConfigError(f"model_modes.{model} must be a list of modes, got {modes!r}")
            for mode in modes:
                if mode not in self.modes:
                    raise ConfigError(
                        unknown_name_message(f"mode of model_modes.{model}", mode, list(self.modes))
                    )
        for mode in self.oracle_modes:
            MODES.get(mode)  # a typo is an error; a valid mode the run does not train is left out
        for algo in self.algos:  # before any stage runs, not when the first policy of `algo` starts
            check_hyperparams(algo, self.act.effective_hparams(algo))
        if self.oracle and self.oracle_modes and not self.planned_oracle_modes:
            raise ConfigError(
                f"none of the oracle modes {list(self.oracle_modes)} is one of the run's modes "
                f"{list(self.modes)}: add one to --oracle-modes, or --no-oracle"
            )

    @property
    def planned_readouts(self) -> tuple[str, ...]:
        """Readout names of the frozen policies ('' = the latent code, as `readout_name` gives)."""
        if not self.readouts:
            return (readout_name(self.act.feature_layer, self.act.feature_head),)
        return tuple(readout_name(*parse_readout(spec)) for spec in self.readouts)

    @property
    def planned_oracle_modes(self) -> tuple[str, ...]:
        """The oracle modes this run trains: `oracle_modes` among `modes` (all modes if unset), so
        `--modes frozen` on a preset with frozen and pixel oracles trains the frozen one."""
        return tuple(m for m in self.oracle_modes if m in self.modes) if self.oracle_modes else self.modes


# ----------------------------------------------------------------------------- stage bookkeeping
def _done_mtime(folder: Path) -> int | None:
    marker = folder / DONE
    return marker.stat().st_mtime_ns if marker.is_file() else None


@dataclass(frozen=True)
class StageJob:
    """One stage to run: `run` must be picklable (a module-level function's partial) to run in a
    worker process; `is_done` only predicts the log line and runs in the main process, once the
    stages in `needs` are finished."""

    stage: str
    label: str
    folder: Path
    is_done: Callable[[], bool]
    run: Callable[[], Path]
    needs: tuple[Path, ...] = ()
    """folders of the stages this one reads (they run first)"""


def _stop_workers(running: list[Future[Any]], tell: bool, grace: float = 60.0) -> None:
    """Interrupt the running stages as Ctrl-C does (each saves a checkpoint and stops), give them
    `grace` seconds for it, then terminate every worker. `tell`: the workers have not had the
    interrupt yet (SIGTERM reaches this process only; Ctrl-C in a terminal reaches all of them)."""
    workers = multiprocessing.active_children()
    if tell:
        for proc in workers:
            if proc.pid is not None:
                os.kill(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    while any(not f.done() for f in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in workers:
        proc.terminate()


def _worker_init(level: str, parent_pid: int) -> None:
    # _stop_workers interrupts a worker with SIGINT, so it must take it even when the command
    # inherited SIGINT ignored (a script's `darla run ... &`): else no stage saves its checkpoint
    signal.signal(signal.SIGINT, signal.default_int_handler)
    setup_logging(level)
    exit_with_parent(parent_pid)


def _timed_call(run: Callable[[], Path]) -> tuple[Path, float]:
    start = time.perf_counter()
    path = run()
    return path, time.perf_counter() - start


class StageRunner:
    """Runs stages (one at a time or in worker processes), says whether each ran or was skipped,
    and logs it to run_log.jsonl."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.log_path = out / RUN_LOG
        self.counts = {"ran": 0, "skipped": 0}

    def _record(self, entry: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def __call__(
        self,
        stage: str,
        label: str,
        folder: Path,
        is_done: Callable[[], bool],
        run: Callable[[], Path],
    ) -> Path:
        before = self._announce(stage, label, folder, is_done)
        return self._settle(stage, label, folder, before, functools.partial(_timed_call, run))

    def run_graph(self, jobs: list[StageJob], workers: int) -> dict[Path, Path]:
        """Run stages in dependency order, `workers` at a time in separate processes (1: in this one,
        in list order). A stage starts as soon as the stages it needs are finished, so no core waits
        at a barrier (pixel policies train while the vision models do). Returns folder -> result."""
        names = {job.folder for job in jobs}
        for i, job in enumerate(jobs):
            earlier = {j.folder for j in jobs[:i]}
            missing = [n for n in job.needs if n in names and n not in earlier]
            if missing:
                raise ConfigError(f"stage {job.label} needs {missing[0]}, which is planned after it")
        results: dict[Path, Path] = {}
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                results[job.folder] = self(job.stage, job.label, job.folder, job.is_done, job.run)
            return results
        pending = list(jobs)
        running: dict[Future[tuple[Path, float]], tuple[StageJob, int | None]] = {}
        level = logging.getLevelName(logging.getLogger("darla").getEffectiveLevel())
        pool = ProcessPoolExecutor(
            min(workers, len(jobs)),
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_worker_init,
            initargs=(str(level), os.getpid()),
        )
        try:
            while pending or running:
                for job in [j for j in pending if all(n in results or n not in names for n in j.needs)]:
                    if len(running) >= workers:
                        break
                    pending.remove(job)
                    before = self._announce(job.stage, job.label, job.folder, job.is_done)
                    running[pool.submit(_timed_call, job.run)] = (job, before)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    job, before = running.pop(future)
                    results[job.folder] = self._settle(
                        job.stage, job.label, job.folder, before, future.result
                    )
        except (KeyboardInterrupt, SystemExit) as exc:
            # stop now, not when the running stages end (possibly an hour): each resumes from its
            # checkpoint on the next run, and no worker may write into the run after we return
            _stop_workers(list(running), tell=isinstance(exc, (Terminated, SystemExit)))
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # running stages finish, nothing new starts
            raise
        pool.shutdown()
        return results

    def _announce(self, stage: str, label: str, folder: Path, is_done: Callable[[], bool]) -> int | None:
        before = _done_mtime(folder)
        try:
            expect_skip = before is not None and is_done()
        except Exception:  # a prediction only decides the log line; the stage itself decides
            expect_skip = False
        if not expect_skip:
            logger.info("[%s] %s: running", stage, label)
        return before

    def _settle(
        self,
        stage: str,
        label: str,
        folder: Path,
        before: int | None,
        outcome: Callable[[], tuple[Path, float]],
    ) -> Path:
        start = time.perf_counter()
        try:
            path, seconds = outcome()
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            seconds = time.perf_counter() - start
            logger.info("[%s] %s: %s after %.1fs", stage, label, status, seconds)
            self._record(
                {"stage": stage, "name": label, "path": str(folder), "status": status, "seconds": seconds}
            )
            raise
        skipped = before is not None and _done_mtime(path) == before
        status = "skipped" if skipped else "ran"
        self.counts[status] += 1
        if skipped:
            logger.info("[%s] %s: skipped (done, config unchanged)", stage, label)
        else:
            logger.info("[%s] %s: done in %.1fs", stage, label, seconds)
        self._record(
            {
                "stage": stage,
                "name": label,
                "path": str(path),
                "status": status,
                "seconds": round(seconds, 3),
                "time": time.time(),
            }
        )
        return path


def read_run_log(out: Path) -> list[dict[str, Any]]:
    """Every stage outcome logged in a run folder, oldest first."""
    path = Path(out) / RUN_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- configs per stage
def _base_of(cfg: RunConfig, model: str) -> str | None:
    """The run model this one is built on (iin and scan take `base`), when `base` names one."""
    params = {**cfg.see.model_params.get(model, {}), **cfg.see.params}
    base = params.get("base")
    return base if isinstance(base, str) and base in cfg.models and base != model else None


def see_order(cfg: RunConfig) -> list[str]:
    """The run's models, each after the model its `base` names (so `base: beta_vae` just works)."""
    from darla.vision.checkpoint import base_order

    return base_order({model: _base_of(cfg, model) for model in cfg.models})


def see_config(cfg: RunConfig, model: str) -> SeeConfig:
    data = {**to_dict(cfg.see), "env": cfg.env, "model": model, "out": str(cfg.out), "seed": cfg.seed}
    base = _base_of(cfg, model)
    if base is not None:  # a model name becomes that model's see folder in this run
        params = dict(data["model_params"].get(model, {}))
        params["base"] = str(Path(cfg.out) / "see" / base)
        data["model_params"] = {**data["model_params"], model: params}
        if "base" in data["params"]:
            data["params"] = {**data["params"], "base": params["base"]}
    return from_dict(SeeConfig, data)


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
        "env": cfg.env,
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
    from darla.agents import MODES

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


def check_readout_layers(cfg: RunConfig) -> None:
    """Every frozen readout that names a layer names one its vision model has, checked on an
    untrained build of the model before any stage runs, so that a typo fails at once instead of
    after the see stage. Models built on another run model's `base` (iin, scan) are checked when
    act loads them: their layers are the base's, which is not trained yet."""
    import torch

    from darla.vision.base import build, require_encoder_layer

    layers: dict[str, set[str]] = {}
    for policy in plan_policies(cfg, cfg.modes, cfg.seeds[:1]):
        if policy.model and policy.readout:
            layers.setdefault(policy.model, set()).add(parse_readout(policy.readout)[0])
    for model, wanted in layers.items():
        if _base_of(cfg, model) is not None:
            continue
        scfg = see_config(cfg, model)
        with torch.random.fork_rng(devices=[]):  # building initialises weights: keep the run's RNG
            vision = build(model, image_shape=(scfg.size, scfg.size, 3), **scfg.effective_params())
        for layer in sorted(wanted):
            require_encoder_layer(vision, layer)


# ----------------------------------------------------------------------------- the run
def run_all(cfg: RunConfig) -> Path:
    """Run (or resume, or skip) every stage; returns the run folder."""
    from darla.agents import MODES
    from darla.envs import get_family
    from darla.pipelines.act import act_dir, run_act
    from darla.pipelines.see import run_see

    check_readout_layers(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / RUN_CONFIG, dump_yaml(cfg))
    family = get_family(cfg.env)
    stage = StageRunner(out)
    started = time.perf_counter()

    jobs = cfg.jobs or num_cores()
    # threads=0 means all cores: with several jobs each gets its share, or their threads would spin
    share = max(1, num_cores() // jobs) if jobs > 1 else 0
    act_threads = cfg.act.threads or share
    graph: list[StageJob] = []

    # 1. see: one vision model per name (after the model its `base` names), if any mode needs one
    see_dirs: dict[str, Path] = {}
    if any(MODES.get(m).needs_vision for m in cfg.modes):
        for model in see_order(cfg):
            scfg = see_config(cfg, model)
            scfg.threads = scfg.threads or share
            base = _base_of(cfg, model)
            see_dirs[model] = scfg.folder
            graph.append(
                StageJob(
                    "see",
                    model,
                    scfg.folder,
                    functools.partial(_see_done, scfg),
                    functools.partial(run_see, scfg),
                    needs=(see_dirs[base],) if base else (),
                )
            )

    # 1b. probe: can the task's factors be read from each model's features, per domain (cheap, no RL)
    from darla.pipelines.probe import ProbeConfig, can_probe, is_probe_done, probe_dir, run_stage

    if cfg.probe_frames and can_probe(family):
        for model, see_dir in see_dirs.items():
            pcfg = ProbeConfig(
                see=see_dir,
                factors=family.probe_factors,
                frames=cfg.probe_frames,
                seed=cfg.seed,
                out=probe_dir(out, model),
                device=cfg.see.device,
                threads=share or 0,
            )
            graph.append(
                StageJob(
                    "probe",
                    model,
                    probe_dir(out, model),
                    functools.partial(is_probe_done, pcfg),
                    functools.partial(run_stage, pcfg),
                    needs=(see_dir,),
                )
            )

    def policy_job(kind: str, policy: Policy, root: Path, domains: tuple[str, ...]) -> StageJob:
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
        acfg.threads = act_threads
        return StageJob(
            kind,
            policy.label,
            act_dir(acfg),
            functools.partial(_act_done, acfg),
            functools.partial(run_act, acfg),
            needs=(see_dir,) if see_dir else (),
        )

    # 2. act: every policy, on the source domains; 3. oracles: the same kind of agent trained on the
    # target domains. Stages without a vision model first (they can start at once), then oracles
    # (every transfer of their kind waits for them), then the costliest modes, so that no long
    # stage starts last.
    policies = plan_policies(cfg, cfg.modes, cfg.seeds)
    oracles: list[Policy] = []
    if cfg.oracle:
        oracles = plan_policies(cfg, cfg.planned_oracle_modes, cfg.oracle_seeds or cfg.seeds[:1])
    target = tuple(family.splits["target"])
    act_jobs = {p: policy_job("act", p, out, ()) for p in policies}
    oracle_jobs = {p: policy_job("oracle", p, out / "oracle", target) for p in oracles}

    def priority(item: tuple[Policy, StageJob]) -> tuple[bool, bool, float]:
        policy, job = item
        return (policy.model is not None, job.stage != "oracle", -MODES.get(policy.mode).cost)

    graph += [job for _, job in sorted([*oracle_jobs.items(), *act_jobs.items()], key=priority)]
    oracle_dirs = {p: job.folder for p, job in oracle_jobs.items()}

    # 4. transfer: every policy, zero-shot, against the floor and its oracle
    with EnvPool() as pool:  # one set of evaluation envs for every transfer run in this process
        transfer_jobs = []
        for policy, job in sorted(act_jobs.items(), key=priority):
            tcfg = dataclasses.replace(
                cfg.transfer,
                act=job.folder,
                out=out,
                oracle=match_oracle(policy, oracle_dirs),
                seed=cfg.seed,
                threads=cfg.transfer.threads or share,
            )
            transfer_jobs.append(
                StageJob(
                    "transfer",
                    policy.label,
                    transfer_dir(tcfg),
                    functools.partial(is_transfer_done, tcfg),
                    functools.partial(run_transfer, tcfg)
                    if jobs > 1
                    else functools.partial(run_transfer, tcfg, pool),
                    needs=(job.folder,) + ((tcfg.oracle,) if tcfg.oracle else ()),
                )
            )
        done = stage.run_graph(graph + transfer_jobs, jobs)
    transfer_dirs = [done[job.folder] for job in transfer_jobs]

    # 5. report: this run's policies only (stale folders of other configs are left out)
    if cfg.report:
        write_report(ReportConfig(run=out), transfer_dirs)
    logger.info(
        "run %s: %d stages ran, %d skipped, %.1fs",
        out,
        stage.counts["ran"],
        stage.counts["skipped"],
        time.perf_counter() - started,
    )
    return out


def _see_done(scfg: SeeConfig) -> bool:
    from darla.pipelines.see import resolve

    return StageDir(scfg.folder, resolve(scfg)).is_done()


def _act_done(acfg: ActConfig) -> bool:
    from darla.pipelines.act import act_dir, resolve_act_config

    return StageDir(act_dir(acfg), resolve_act_config(acfg)[0]).is_done()


def match_oracle(policy: Policy, oracles: dict[Policy, Path]) -> Path | None:
    """The oracle for a policy: same model, mode, readout and algo (same seed if trained, else the
    first). Failing that, an oracle of the same algo whose features are as trainable as the
    policy's (finetune has no finetune oracle: the end-to-end pixels oracle is its ceiling, not a
    frozen one that its own target return can pass), preferring the same vision model; failing
    that, the first oracle of the same algo."""
    from darla.agents import MODES

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


def _command(cfg: RunConfig) -> dict[str, Any]:
    out = run_all(cfg)
    counts: dict[str, int] = {}
    for entry in read_run_log(out):
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    result: dict[str, Any] = {
        "out": str(out),
        "see": str(out / "see"),
        "act": str(out / "act"),
        "transfer": str(out / "transfer"),
        "log": str(out / RUN_LOG),
    }
    if cfg.report:
        report = out / "report"
        result.update(
            report=str(report / "report.md"),
            plot=str(report / "transfer.png"),
            csv=str(report / "results.csv"),
            table=read_headline(report),
        )
    return result


def render(result: dict[str, Any]) -> str:
    lines = [f"run folder: {result['out']}"]
    if "table" in result:
        lines += [
            "",
            render_table(result["table"]),
            "",
            f"report: {result['report']}",
            f"plot:   {result['plot']}",
        ]
    return "\n".join(lines)


COMMAND = Command(
    words=("run",),
    config=RunConfig,
    run=_command,
    help="see -> act -> transfer -> report, resumable",
    render=render,
)
