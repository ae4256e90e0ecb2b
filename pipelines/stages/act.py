"""Stage 2, `darla act`: train an SB3 policy in the source domains on a vision model's features.

The stage folder `<out>/act/<vision>/<algo>/s<seed>/` holds `policy.zip`, the resolved
`config.yaml` (env, source domains, frame size, the vision checkpoint by path and content hash, the
full hyperparameters), `evaluations.npz` (periodic evaluations on the source domains, zoo format),
`tb/` (tensorboard) and `DONE.json` last. A killed run resumes from its last checkpoint (taken where it
is exact: between two rollouts; see `darla.agents.checkpoint`) when re-run with the same config, and
continues bit for bit as the unbroken run would on the same host.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.vec_env import VecEnv

from darla.agents.agent import (
    FEATURE_STATS,
    POLICY,
    Agent,
    agent_from_folder,
    load_agent,
    policy_feature_map,
    policy_features,
    uses_feature_norm,
    with_feature_norm,
)
from darla.agents.algos import ALGOS, AlgoSpec
from darla.agents.checkpoint import Resume, checkpoint_meta, clear_checkpoint, load_checkpoint
from darla.agents.config import ActConfig, PolicyInputs
from darla.agents.factory import build_model, worker_wrapper, wrap_env
from darla.agents.features import Encoder, encode_batch, feature_moments
from darla.agents.modes import MODES
from darla.artifacts import (
    StageDir,
    atomic_save,
    atomic_write_json,
    read_json,
)
from darla.cli import Command
from darla.errors import ArtifactError
from darla.pipelines.stages.act_callbacks import CheckpointCallback, SourceEvalCallback
from darla.pipelines.stages.act_inputs import act_dir, act_stage, resolve_act_config
from darla.runtime import held_interrupts, resolve_device, setup_torch
from darla.seeding import derive_seed, seed_everything

if TYPE_CHECKING:
    from darla.vision import VisionModel

__all__ = ["COMMAND", "ActConfig", "act_dir", "act_stage", "load_agent", "resolve_act_config", "run_act"]

logger = logging.getLogger(__name__)

EVALUATIONS = "evaluations.npz"
IMITATION = "imitation.json"


# ----------------------------------------------------------------------------- the stage
def make_env(
    cfg: ActConfig,
    *,
    n_envs: int,
    seed: int,
    vec: Literal["auto", "dummy", "subproc"] | None = None,
    domain_mode: Literal["per_worker", "per_episode"] | None = None,
    vision: Encoder | None = None,
    record_episodes: bool = False,
) -> VecEnv:
    """The act env of `cfg` in its mode: frozen features come out of it (or, with `subproc`, of
    its workers) once `wrap_env` has been applied."""
    from darla.envs import make_vec_env

    assert cfg.env is not None and cfg.size is not None
    vec = vec or cfg.vec
    return make_vec_env(
        cfg.env,
        list(cfg.domains),
        n_envs,
        seed=seed,
        size=cfg.size,
        vec=vec,
        domain_mode=domain_mode or cfg.domain_mode,
        max_episode_steps=cfg.max_episode_steps,
        wrapper=worker_wrapper(cfg.mode, vision, vec),
        record_episodes=record_episodes,
    )


def feature_statistics(cfg: ActConfig, vision: Encoder) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the frozen features over `feature_norm_frames` frames of the act domains.

    The frames come from the see stage's own collector (its 'mixed' policy shows the objects often,
    and the collection is cached), seeded from the act seed, so the statistics are a function of
    the config; only the training domains are read, never a target.
    """
    from darla.envs import collect_frames

    assert cfg.env is not None and cfg.size is not None
    frames = collect_frames(
        cfg.env,
        list(cfg.domains),
        cfg.feature_norm_frames,
        seed=derive_seed(cfg.seed, "act", "feature-stats"),
        size=cfg.size,
        workers=1,
    )
    return feature_moments(encode_batch(vision, np.asarray(frames.frames)))  # encode batches itself


def standardized(cfg: ActConfig, folder: Path, vision: VisionModel | None) -> Encoder | None:
    """The encoder the policy reads: `vision`, or, with `feature_norm`, `vision` standardised by
    statistics computed once and kept in the act folder (a resumed run reuses them)."""
    if vision is None:
        return None
    if not uses_feature_norm(cfg):
        return policy_features(cfg, vision)
    path = folder / FEATURE_STATS
    if not path.is_file():
        mean, std = feature_statistics(cfg, policy_features(cfg, vision))

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, mean=mean, std=std, frames=cfg.feature_norm_frames)

        atomic_save(path, write)
        logger.info(
            "feature statistics from %d frames: std %.3f-%.3f (min-max over %d features)",
            cfg.feature_norm_frames,
            float(std.min()),
            float(std.max()),
            len(std),
        )
    return with_feature_norm(cfg, folder, vision)


def run_act(cfg: ActConfig) -> Path:
    """Train (or resume, or skip when done) one act run; returns its folder."""
    cfg, inputs, vision = resolve_act_config(cfg)
    folder = act_dir(cfg)
    stage = act_stage(cfg, inputs)
    stage.lock()  # refuse at once (naming the holder) if another process writes this policy
    if stage.is_done():
        logger.info("act already done: %s", folder)
        return folder
    setup_torch(cfg.threads)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    stage.prepare()
    cfg_hash = stage.hash
    checkpoint = checkpoint_meta(folder, cfg_hash)
    resume_at = int(checkpoint["num_timesteps"]) if checkpoint is not None else None
    if checkpoint is None:
        clear_checkpoint(folder)
        (folder / EVALUATIONS).unlink(missing_ok=True)
        (folder / FEATURE_STATS).unlink(missing_ok=True)
    logger.info(
        "act %s/%s on %s %s (size %d, %d envs, %d steps)%s",
        cfg.algo,
        cfg.mode,
        cfg.env,
        list(cfg.domains),
        cfg.size,
        cfg.n_envs,
        cfg.timesteps,
        f", resuming at {resume_at}" if resume_at is not None else "",
    )
    encoder = standardized(cfg, folder, vision)
    imitating = cfg.expert is not None
    venv = wrap_env(
        make_env(
            cfg,
            n_envs=cfg.n_envs,
            seed=derive_seed(cfg.seed, "act", "train"),
            # the expert reads frames: cloning keeps them in one process, features made beside them
            vec="dummy" if imitating else None,
            vision=encoder,
            record_episodes=not imitating,
        ),
        cfg.mode,
        encoder,
    )
    # raw frames: the evaluation plays the policy as transfer does (`Agent`), on fixed episodes
    eval_env = make_env(
        cfg,
        n_envs=min(len(cfg.domains), cfg.eval_episodes),
        seed=derive_seed(cfg.seed, "act", "eval"),
        vec="dummy",
        domain_mode="per_episode",
    )
    run = _Session(cfg, inputs, folder, stage, venv, eval_env, device, encoder, ALGOS.get(cfg.algo))
    try:
        return _imitate(run) if imitating else _train(run, checkpoint)
    finally:
        venv.close()
        eval_env.close()


@dataclasses.dataclass(frozen=True)
class _Session:
    """One act run's resolved config and what it trains and evaluates with (RL and cloning alike)."""

    cfg: ActConfig
    inputs: PolicyInputs
    folder: Path
    stage: StageDir
    venv: VecEnv
    eval_env: VecEnv
    device: str
    encoder: Encoder | None
    spec: AlgoSpec

    @property
    def feature_map(self) -> tuple[int, ...] | None:
        return policy_feature_map(self.cfg, self.encoder)

    def new_model(self, tensorboard_log: Path | None = None) -> BaseAlgorithm:
        cfg = self.cfg
        return build_model(
            cfg.algo,
            cfg.mode,
            self.venv,
            cfg.hparams,
            seed=cfg.seed,
            device=self.device,
            vision_checkpoint=self.inputs.vision_checkpoint,
            feature_map=self.feature_map,
            tensorboard_log=tensorboard_log,
        )

    def evaluator(self, freq: int, upto: int | None = None) -> SourceEvalCallback:
        """Evaluations on the source domains: `eval_episodes` fixed episodes, dealt over the domains."""
        cfg = self.cfg
        return SourceEvalCallback(
            self.eval_env,
            lambda model: Agent(cfg, model, self.encoder, self.folder),
            self.folder / EVALUATIONS,
            freq,
            cfg.domains,
            cfg.eval_episodes,
            derive_seed(cfg.seed, "act", "eval-episodes"),
            upto=upto,
        )


def _train(run: _Session, checkpoint: dict[str, Any] | None) -> Path:
    cfg, folder = run.cfg, run.folder
    cfg_hash = run.stage.hash
    model = run.new_model(tensorboard_log=folder / "tb")
    resumes: list[dict[str, Any]] = list(checkpoint.get("resumes", [])) if checkpoint else []
    if checkpoint is not None:
        resume: Resume = load_checkpoint(run.spec, model, run.venv, folder, checkpoint)
        resumes.append({"from": resume.num_timesteps, "exact": resume.exact, "notes": resume.notes})
        logger.info(
            "resumed from the checkpoint at %d steps (%s)",
            resume.num_timesteps,
            "exact" if resume.exact else "NOT exact: " + "; ".join(resume.notes),
        )
    evaluator = run.evaluator(cfg.eval_freq, upto=int(model.num_timesteps))
    remaining = cfg.timesteps - int(model.num_timesteps)
    started = time.perf_counter()
    steps_before = int(model.num_timesteps)
    if remaining > 0:
        with held_interrupts() as stop:
            saver = CheckpointCallback(
                run.spec, run.venv, folder, cfg.checkpoint_freq, cfg_hash, stop, resumes
            )
            model.learn(
                total_timesteps=remaining,
                callback=CallbackList([evaluator, saver]),
                tb_log_name="run",
                reset_num_timesteps=checkpoint is None,
                progress_bar=cfg.progress and sys.stderr.isatty(),
            )
    seconds = time.perf_counter() - started
    steps = int(model.num_timesteps) - steps_before
    record = {
        "resumed_from": checkpoint["num_timesteps"] if checkpoint else None,
        "resumes": resumes,
        "exact": all(r["exact"] for r in resumes),
    }
    return _finish(run, model, evaluator, seconds, steps, record)


def _finish(
    run: _Session,
    model: BaseAlgorithm,
    evaluator: SourceEvalCallback,
    seconds: float,
    steps: int,
    record: dict[str, Any],
) -> Path:
    """Evaluate at the last step (if not yet), save the policy, check that it reloads identically,
    mark the stage done with `record` added to DONE.json."""
    folder = run.folder
    if not evaluator.timesteps or evaluator.timesteps[-1] != model.num_timesteps:
        evaluator.init_callback(model)
        evaluator.num_timesteps = int(model.num_timesteps)
        evaluator.evaluate()
    run.spec.persistence.save_policy(model, folder / POLICY, {"algo": run.cfg.algo, "mode": run.cfg.mode})
    checked = _check_reload(model, run)
    mean = float(np.mean(evaluator.results[-1]))
    run.stage.mark_done(
        num_timesteps=int(model.num_timesteps),
        eval_mean_reward=mean,
        train_seconds=round(seconds, 2),
        steps_per_second=round(steps / seconds, 1) if seconds > 0 and steps > 0 else None,
        reload_checked_frames=checked,
        **record,
    )
    clear_checkpoint(folder)
    logger.info("act done: %s (eval mean reward %.3f)", folder, mean)
    return folder


def _imitate(run: _Session) -> Path:
    """Behaviour cloning instead of RL (`--expert`): short, so a killed run starts it again."""
    from darla.agents.imitate import collect_demonstrations, fit_policy

    cfg, encoder = run.cfg, run.encoder
    assert cfg.expert is not None
    expert = load_agent(cfg.expert, device=run.device)
    model = run.new_model()
    mode = MODES.get(cfg.mode)
    started = time.perf_counter()
    demos = collect_demonstrations(
        expert,
        run.venv.unwrapped,  # the raw frames under the mode's wrappers
        cfg.timesteps,
        lambda frames: mode.prepare(frames, encoder),
        seed=derive_seed(cfg.seed, "act", "imitate", "actions"),
    )
    fit = fit_policy(
        model.policy,
        demos,
        epochs=cfg.imitate_epochs,
        lr=cfg.imitate_lr,
        seed=derive_seed(cfg.seed, "act", "imitate", "fit"),
    )
    seconds = time.perf_counter() - started
    atomic_write_json(run.folder / IMITATION, {"expert": str(cfg.expert), **fit})
    logger.info(
        "cloned %s from %d expert steps (%d expert episodes finished, mean return %s): held-out "
        "agreement %.3f, cross-entropy %.3f (the expert's own entropy %.3f)",
        cfg.expert,
        fit["steps"],
        fit["expert_episodes"],
        "n/a" if fit["expert_mean_return"] is None else f"{fit['expert_mean_return']:.2f}",
        fit["heldout_agreement"],
        fit["heldout_cross_entropy"],
        fit["heldout_expert_entropy"],
    )
    model.num_timesteps = len(demos)
    evaluator = run.evaluator(0)
    record = {"imitation_agreement": round(float(fit["heldout_agreement"]), 4)}
    return _finish(run, model, evaluator, seconds, len(demos), record)


def _check_reload(model: BaseAlgorithm, run: _Session) -> int:
    """The saved policy, reloaded through `load_agent`, must act like the one in memory."""
    from darla.envs import get_family

    cfg = run.cfg
    assert cfg.env is not None and cfg.size is not None
    family = get_family(cfg.env)
    frames = []
    for i, domain in enumerate(cfg.domains):
        env = family.make(domain, seed=derive_seed(cfg.seed, "act", "reload-check", i), size=cfg.size)
        obs, _ = env.reset()
        frames.append(np.asarray(obs))
        for _ in range(3):
            obs, *_ = env.step(env.action_space.sample())
            frames.append(np.asarray(obs))
        env.close()
    batch = np.stack(frames)
    live = Agent(cfg, model, run.encoder, run.folder)
    reloaded = agent_from_folder(run.folder, cfg, run.inputs, cfg.device)
    a, b = live.predict(batch), reloaded.predict(batch)
    if not np.array_equal(a, b):
        raise ArtifactError(f"the saved policy in {run.folder} acts differently after reloading: {a} vs {b}")
    return len(batch)


def _render(result: dict[str, Any]) -> str:
    return f"act folder: {result['path']}\neval mean reward (source domains): {result['eval_mean_reward']}"


def _run(cfg: ActConfig) -> dict[str, Any]:
    path = run_act(cfg)
    done = read_json(path / "DONE.json")
    return {
        "path": str(path),
        "num_timesteps": done.get("num_timesteps"),
        "eval_mean_reward": done.get("eval_mean_reward"),
        "steps_per_second": done.get("steps_per_second"),
    }


COMMAND = Command(
    words=("act",),
    config=ActConfig,
    run=_run,
    help="stage 2: train a policy on frozen features in source domains",
    render=_render,
)
