"""`darla run`: see -> act -> (oracle) -> transfer -> report, in one resumable command.

`darla run --env SeekAvoid --preset quick --out runs/quick` trains every vision model of the
preset, every policy (vision model x mode x algorithm x seed; `pixels` needs no vision model),
the target-domain oracles where asked, evaluates every policy zero-shot and writes the report.

The planner (`plan.py`) decides the stages; the local backend (`local.py`) runs them. Every stage
writes its own folder and is skipped when it is done with an unchanged config; a changed config
re-runs that stage and, because each downstream stage records its inputs (act the vision
checkpoint's hash, transfer the act folder's completion hash), everything that depends on it. A
killed run continues where it stopped: finished stages are skipped, an interrupted act resumes
from its checkpoint. Each stage's outcome is appended to `<out>/run_log.jsonl`. A run holds its
folder (darla.locks): a second run on it, or a lone stage writing into it, refuses or waits
(`--wait`) until the first has ended.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from darla import locks
from darla.agents.algos import ALGOS
from darla.agents.config import ActSettings
from darla.agents.evaluation import EnvPool
from darla.agents.factory import check_hyperparams
from darla.agents.modes import MODES
from darla.agents.readouts import parse_readout, readout_name
from darla.artifacts import atomic_write_text
from darla.cli import Command
from darla.config import dump_yaml
from darla.envs import get_family
from darla.errors import ConfigError
from darla.pipelines.analysis.probe import can_probe
from darla.pipelines.analysis.report import ReportConfig, read_headline, render_table, write_report
from darla.pipelines.orchestrate.local import RUN_LOG, LocalBackend, RunLog, read_run_log
from darla.pipelines.orchestrate.plan import check_readout_layers, plan_run, transfer_folders
from darla.pipelines.stages.see import SeeSettings
from darla.pipelines.stages.transfer import TransferSettings
from darla.registry import unknown_name_message
from darla.runtime import num_cores
from darla.vision import MODELS

logger = logging.getLogger(__name__)

RUN_CONFIG = "run.yaml"


@dataclass
class RunConfig:
    """Run all stages for every vision model x mode x algorithm x seed, then the report."""

    env: str = "SeekAvoid"
    """env family (a darla family, a plug-in's, or any Gymnasium id with RGB frames when `shift` is set)"""
    shift: str = ""
    """a pixel shift suite over `env` (colour, distractors, background): the run is on `<env>@<shift>`,
    the unshifted env and the suite's mild levels as sources, held-out levels as targets"""
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
    disentanglement: bool = False
    """also score every vision model's disentanglement (MIG, DCI, FactorVAE score, SAP, modularity) on
    the env family's own ground truth (`darla evaluate`), for the report's disentanglement-vs-transfer"""
    metrics_point_scale: float = 0.1
    """with `disentanglement`: the metrics' point counts relative to disentanglement_lib's (1: theirs)"""
    report: bool = True
    """write the report at the end"""
    jobs: int = 1
    """act, oracle and transfer stages run at once, each in its own process (0: one per core). They
    are independent, and one PPO on 64x64 frames keeps about one core busy, so 2 jobs on 2 cores
    nearly halve those stages' time; results do not depend on it"""
    see: SeeSettings = field(default_factory=SeeSettings)
    """see-stage settings shared by every vision model"""
    act: ActSettings = field(default_factory=ActSettings)
    """act-stage settings shared by every policy"""
    transfer: TransferSettings = field(default_factory=TransferSettings)
    """transfer settings shared by every evaluation"""

    hash_exclude: ClassVar[tuple[str, ...]] = ("out", "jobs")

    @property
    def family(self) -> str:
        """The env family the run is on: `env`, or `env@shift`."""
        return f"{self.env}@{self.shift}" if self.shift else self.env

    def validate(self) -> None:
        if "@" in self.env and self.shift:
            raise ConfigError(f"env {self.env!r} already names a shift; drop --shift {self.shift}")
        get_family(self.family)
        if not self.metrics_point_scale > 0:
            raise ConfigError(f"metrics_point_scale must be > 0, got {self.metrics_point_scale}")
        for name, values, registry in (
            ("models", self.models, MODELS),
            ("modes", self.modes, MODES),
            ("algos", self.algos, ALGOS),
        ):
            if len(set(values)) != len(values):
                raise ConfigError(f"run {name} must not repeat, got {list(values)}")
            for value in values:
                registry.get(value)
        for mode in self.modes:
            MODES.get(mode).check_frame_size(self.see.size, self.see.size)
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

    def target_domains(self) -> tuple[str, ...]:
        """The env family's target domains (where the oracles train)."""
        return tuple(get_family(self.family).splits["target"])

    @property
    def planned_oracle_modes(self) -> tuple[str, ...]:
        """The oracle modes this run trains: `oracle_modes` among `modes` (all modes if unset), so
        `--modes frozen` on a preset with frozen and pixel oracles trains the frozen one."""
        return tuple(m for m in self.oracle_modes if m in self.modes) if self.oracle_modes else self.modes


def run_all(cfg: RunConfig) -> Path:
    """Run (or resume, or skip) every stage; returns the run folder."""
    check_readout_layers(cfg)
    out = Path(cfg.out)
    # one run per folder: a second run, or a lone stage writing into it, refuses (or waits) until this
    # process ends; the lock goes with the process however it ends
    locks.hold(out)
    atomic_write_text(out / RUN_CONFIG, dump_yaml(cfg))
    family = get_family(cfg.family)
    started = time.perf_counter()
    jobs = cfg.jobs or num_cores()
    # threads=0 means all cores: with several jobs each gets its share, or their threads would spin
    share = max(1, num_cores() // jobs) if jobs > 1 else 0
    tasks = plan_run(cfg, threads=share, probe_factors=family.probe_factors if can_probe(family) else ())
    log = RunLog(out)
    with EnvPool() as pool:  # one set of evaluation envs for every transfer run in this process
        LocalBackend(log, jobs, pool=pool if jobs <= 1 else None).execute(tasks)
    # the report: this run's policies only (stale folders of other configs are left out)
    if cfg.report:
        write_report(ReportConfig(run=out), transfer_folders(tasks))
    logger.info(
        "run %s: %d stages ran, %d skipped, %.1fs",
        out,
        log.counts["ran"],
        log.counts["skipped"],
        time.perf_counter() - started,
    )
    return out


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
