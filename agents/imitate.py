"""Behaviour cloning: fit an act policy to another policy's actions instead of training it by RL.

A frozen policy's transfer mixes two questions: do the features hold what a good policy needs, in
the sources and in the targets, and does RL find that policy. Cloning a strong expert (say the
pixel baseline) onto the features answers the first without the second: a clone that acts like
the expert in the sources but not in the targets shows the features, not RL, failing to transfer.

The expert plays `steps` env steps in the training domains with sampled actions (as `darla
transfer` evaluates it); the student's actor (features extractor, policy MLP, action head) is fit
to the expert's whole action distribution by cross-entropy. One pass of expert data, no DAgger:
on SeekAvoid two DAgger rounds moved the clone's source and target returns by less than their
noise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecEnv

from darla.errors import ConfigError, TrainingError
from darla.log import progress

from .agent import Agent

logger = logging.getLogger(__name__)

"""students must have an actor-critic policy (an action distribution to fit)"""
BATCH_SIZE = 256
HOLDOUT = 0.1
"""share of the demonstrations held out to score the fit (agreement with the expert)"""


@dataclass
class Demonstrations:
    """What the student reads at each expert step, and the expert's action distribution there."""

    obs: np.ndarray
    probs: np.ndarray
    episode_returns: list[float]

    def __len__(self) -> int:
        return len(self.obs)


def collect_demonstrations(
    expert: Agent,
    venv: VecEnv,
    steps: int,
    student_obs: Callable[[np.ndarray], np.ndarray],
    seed: int,
) -> Demonstrations:
    """Play the expert (sampled actions) on `venv`, whose observations are raw uint8 frames."""
    rng = np.random.default_rng(seed)
    n = venv.num_envs
    first = venv.reset()
    if not isinstance(first, np.ndarray) or first.dtype != np.uint8 or first.ndim != 4:
        raise ConfigError("imitation needs an env of raw uint8 frames (n, H, W, 3)")
    frames: np.ndarray = first
    obs: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    returns: list[float] = []
    running = np.zeros(n)
    rounds = -(-steps // n)
    bar = progress(total=rounds * n, desc="expert", unit="step")
    try:
        for _ in range(rounds):
            p = expert.action_probabilities(frames)
            obs.append(student_obs(frames))
            probs.append(p)
            actions = np.array([rng.choice(p.shape[1], p=row / row.sum()) for row in p])
            step_frames, rewards, dones, _infos = venv.step(actions)
            frames = np.asarray(step_frames)
            running += rewards
            for i in np.flatnonzero(dones):
                returns.append(float(running[i]))
                running[i] = 0.0
            bar.update(n)
    finally:
        bar.close()
    return Demonstrations(np.concatenate(obs)[:steps], np.concatenate(probs)[:steps], returns)


def _actor_logits(policy: ActorCriticPolicy, obs: torch.Tensor) -> torch.Tensor:
    features = policy.extract_features(obs, policy.pi_features_extractor)
    assert isinstance(features, torch.Tensor)
    return policy.action_net(policy.mlp_extractor.forward_actor(features))


def actor_parameters(policy: ActorCriticPolicy) -> list[torch.nn.Parameter]:
    """What acting depends on: the actor's features extractor (empty for frozen features), its MLP
    and the action head. The value function is left as built: transfer never reads it."""
    modules = [policy.pi_features_extractor, policy.mlp_extractor.policy_net, policy.action_net]
    params = {id(p): p for m in modules for p in m.parameters() if p.requires_grad}
    return list(params.values())


def fit_policy(policy: Any, demos: Demonstrations, *, epochs: int, lr: float, seed: int) -> dict[str, Any]:
    """Fit the student's action distribution to the expert's; returns the fit's history and scores."""
    if not isinstance(policy, ActorCriticPolicy):
        raise ConfigError(f"imitation fits actor-critic policies (ppo, a2c); got {type(policy).__name__}")
    if len(demos) < 10:
        raise ConfigError(f"imitation needs at least 10 expert steps, got {len(demos)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(demos))
    n_val = max(1, round(HOLDOUT * len(demos)))
    val, train = order[:n_val], order[n_val:]
    targets = torch.as_tensor(demos.probs, dtype=torch.float32, device=policy.device)
    params = actor_parameters(policy)
    optimiser = torch.optim.Adam(params, lr=lr)

    def batch(idx: np.ndarray) -> torch.Tensor:
        tensor, _ = policy.obs_to_tensor(demos.obs[idx])
        assert isinstance(tensor, torch.Tensor)
        return tensor

    def cross_entropy(idx: np.ndarray, logits: torch.Tensor) -> torch.Tensor:
        """Per step: the expert's distribution against the student's."""
        return -(targets[idx] * torch.log_softmax(logits, dim=-1)).sum(-1)

    history: list[float] = []
    policy.set_training_mode(True)
    bar = progress(total=epochs, desc="imitate", unit="epoch")
    try:
        for _epoch in range(epochs):
            perm = rng.permutation(train)
            total, count = 0.0, 0
            for start in range(0, len(perm), BATCH_SIZE):
                idx = perm[start : start + BATCH_SIZE]
                loss = cross_entropy(idx, _actor_logits(policy, batch(idx))).mean()
                if not torch.isfinite(loss):
                    raise TrainingError(f"imitation loss became {float(loss.detach())}")
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            history.append(total / max(count, 1))
            bar.update(1)
            bar.set_postfix_str(f"cross-entropy {history[-1]:.3f}")
    finally:
        bar.close()
        policy.set_training_mode(False)
    with torch.no_grad():
        ce, agree = 0.0, 0.0
        for start in range(0, n_val, BATCH_SIZE):
            idx = val[start : start + BATCH_SIZE]
            logits = _actor_logits(policy, batch(idx))
            ce += float(cross_entropy(idx, logits).sum())
            agree += float((logits.argmax(-1) == targets[idx].argmax(-1)).float().sum())
    p = demos.probs[val]
    entropy = float(-(p * np.log(np.clip(p, 1e-12, None))).sum(-1).mean())
    return {
        "steps": len(demos),
        "epochs": epochs,
        "learning_rate": lr,
        "train_cross_entropy": history,
        "heldout_cross_entropy": ce / n_val,
        "heldout_expert_entropy": entropy,
        "heldout_agreement": agree / n_val,
        "expert_episodes": len(demos.episode_returns),
        "expert_mean_return": float(np.mean(demos.episode_returns)) if demos.episode_returns else None,
    }
