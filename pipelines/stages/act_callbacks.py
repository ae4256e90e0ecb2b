"""The act stage's training callbacks: periodic evaluation on the source domains, and checkpoints at
the boundaries where they are exact (and where a held Ctrl-C stops the run)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from darla.agents.agent import Agent
from darla.agents.checkpoint import save_checkpoint
from darla.agents.evaluation import Episode, agent_action_fn, run_episodes
from darla.artifacts import atomic_save
from darla.errors import TrainingError
from darla.runtime import HeldInterrupt
from darla.seeding import derive_seed

if TYPE_CHECKING:
    from darla.agents.algos import AlgoSpec

logger = logging.getLogger(__name__)


class SourceEvalCallback(BaseCallback):
    """Evaluate on the source domains every `freq` env steps; `evaluations.npz` (zoo format), atomically.

    The episodes are fixed (`episodes` of them, dealt over `domains` in turn, seeded from `seed`) and
    played by the episode runner transfer uses. Scheduled by `num_timesteps` (not by call count) and
    preloaded from an existing file, so a resumed run continues the same curve.
    """

    def __init__(
        self,
        eval_env: VecEnv,
        agent_of: Callable[[Any], Agent],
        path: Path,
        freq: int,
        domains: Sequence[str],
        episodes: int,
        seed: int,
        upto: int | None = None,
    ) -> None:
        super().__init__()
        self.eval_env = eval_env
        self.agent_of = agent_of
        self.path = path
        self.freq = freq
        self.plan = [
            Episode(
                domains[i % len(domains)],
                i // len(domains),
                derive_seed(seed, "act-eval", domains[i % len(domains)], i // len(domains)),
            )
            for i in range(episodes)
        ]
        self.timesteps: list[int] = []
        self.results: list[list[float]] = []
        self.lengths: list[list[int]] = []
        if path.is_file():
            with np.load(path) as data:
                self.timesteps = [int(t) for t in data["timesteps"]]
                self.results = [list(map(float, r)) for r in data["results"]]
                self.lengths = [list(map(int, r)) for r in data["ep_lengths"]]
            # evaluations made after the checkpoint we resume from belong to a lost continuation
            keep = [i for i, t in enumerate(self.timesteps) if upto is None or t <= upto]
            self.timesteps = [self.timesteps[i] for i in keep]
            self.results = [self.results[i] for i in keep]
            self.lengths = [self.lengths[i] for i in keep]

    def _next_due(self) -> int:
        last = self.timesteps[-1] if self.timesteps else 0
        return (last // self.freq + 1) * self.freq

    def _on_step(self) -> bool:
        if self.freq > 0 and self.num_timesteps >= self._next_due():
            self.evaluate()
        return True

    def evaluate(self) -> float:
        """Play the same episodes every time (they do not depend on training progress) with the policy
        as transfer will see it: raw frames in, greedy actions out."""
        agent = self.agent_of(self.model)
        returns, lengths = run_episodes(self.eval_env, self.plan, agent_action_fn(agent, True)(self.plan, 0))
        mean = float(np.mean(returns))
        if not np.isfinite(mean):
            raise TrainingError(f"evaluation returned a non-finite mean reward ({mean})")
        self.timesteps.append(int(self.num_timesteps))
        self.results.append([float(r) for r in returns])
        self.lengths.append([int(n) for n in lengths])
        self.save()
        self.logger.record("eval/mean_reward", mean)
        self.logger.record("eval/mean_ep_length", float(np.mean(lengths)))
        self.logger.dump(self.num_timesteps)
        logger.info(
            "eval at %d steps: mean reward %.3f over %d episodes", self.num_timesteps, mean, len(returns)
        )
        return mean

    def save(self) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, timesteps=self.timesteps, results=self.results, ep_lengths=self.lengths)

        atomic_save(self.path, write)


class CheckpointCallback(BaseCallback):
    """A checkpoint at the first boundary (rollout start, or any step for MFEC) after every `freq` env
    steps, and at the first boundary after a stop was requested (then it stops the run)."""

    def __init__(
        self,
        spec: AlgoSpec,
        venv: VecEnv,
        folder: Path,
        freq: int,
        cfg_hash: str,
        stop: HeldInterrupt,
        resumes: list[dict[str, Any]],
    ) -> None:
        super().__init__()
        self.spec = spec
        self.venv = venv
        self.folder = folder
        self.freq = freq
        self.cfg_hash = cfg_hash
        self.stop = stop
        self.resumes = resumes
        self.last = -1
        self.at = spec.persistence.checkpoint_at

    def _on_training_start(self) -> None:
        self.last = self.num_timesteps // self.freq if self.freq else 0

    def _on_rollout_start(self) -> None:
        if self.at == "rollout":
            self._boundary()

    def _on_step(self) -> bool:
        if self.at == "step":
            self._boundary()
        return True

    def _boundary(self) -> None:
        due = self.freq > 0 and self.num_timesteps // self.freq > self.last
        if due or self.stop.pending:
            if self.freq > 0:
                self.last = self.num_timesteps // self.freq
            save_checkpoint(self.spec, self.model, self.venv, self.folder, self.cfg_hash, self.resumes)
        self.stop.deliver()  # a Ctrl-C or SIGTERM held until here stops the run, checkpointed
