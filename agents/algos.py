"""The RL algorithms darla trains, each with how its policy and training state are saved and loaded.

`ALGOS` maps a name to an `AlgoSpec`: the class to build, whether it keeps a replay buffer, and its
`Persistence`: where a checkpoint can be exact (between two rollouts for SB3's algorithms, after any
step for MFEC), how to capture and restore the training state, and how to save and load a finished
policy without unpickling anything (`darla.agents.persist`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO

from darla.errors import ArtifactError, ConfigError
from darla.registry import Registry

from .mfec import MFEC
from .persist import (
    TrainingState,
    capture_sb3,
    read_sb3_policy,
    restore_sb3,
    save_sb3_policy,
    space_from_dict,
)

Skeleton = Callable[[spaces.Space, spaces.Space], Any]
"""Builds an untrained model of the policy's config for the given observation and action spaces."""


class Persistence(Protocol):
    checkpoint_at: Literal["rollout", "step"]
    """Where a checkpoint captures everything: at a rollout's start (the rollout buffer is empty) or
    after any step."""

    def save_policy(self, model: Any, path: Path, meta: dict[str, Any]) -> None: ...

    def load_policy(self, path: Path, skeleton: Skeleton) -> Any: ...

    def capture(self, model: Any) -> TrainingState: ...

    def restore(self, model: Any, state: TrainingState) -> None: ...


class SB3Persistence:
    """SB3 algorithms: SB3's zip layout plus darla's JSON record; only `policy.pth` is read back."""

    checkpoint_at: Literal["rollout", "step"] = "rollout"

    def save_policy(self, model: Any, path: Path, meta: dict[str, Any]) -> None:
        save_sb3_policy(model, path, meta)

    def load_policy(self, path: Path, skeleton: Skeleton) -> Any:
        meta, state = read_sb3_policy(path)
        model = skeleton(space_from_dict(meta["observation_space"]), space_from_dict(meta["action_space"]))
        try:
            model.policy.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ArtifactError(
                f"{path}: the saved weights do not fit the policy its config describes "
                f"({str(exc).splitlines()[0]})"
            ) from None
        model.num_timesteps = int(meta.get("num_timesteps", 0))
        return model

    def capture(self, model: Any) -> TrainingState:
        return capture_sb3(model)

    def restore(self, model: Any, state: TrainingState) -> None:
        restore_sb3(model, state)


class MFECPersistence:
    """MFEC: its own `.npz` zip (arrays and a JSON header), read with `allow_pickle=False`."""

    checkpoint_at: Literal["rollout", "step"] = "step"

    def save_policy(self, model: Any, path: Path, meta: dict[str, Any]) -> None:
        model.save(path)

    def load_policy(self, path: Path, skeleton: Skeleton) -> Any:
        return MFEC.load(path)

    def capture(self, model: Any) -> TrainingState:
        return model.capture_state()

    def restore(self, model: Any, state: TrainingState) -> None:
        model.restore_state(state)


@dataclass(frozen=True)
class AlgoSpec:
    """An RL algorithm: its class, whether it keeps a replay buffer, how it is saved and loaded."""

    name: str
    cls: type[Any]
    off_policy: bool
    persistence: Persistence
    actor_critic: bool = False
    """Its policy has an actor with action distributions (what `act --expert` clones into)."""


def check_algo(name: str, spec: Any) -> None:
    """A registered algorithm is an AlgoSpec under its own name (also for plug-ins)."""
    if not isinstance(spec, AlgoSpec):
        raise ConfigError(f"algorithm {name!r} must be a darla.agents.AlgoSpec, got {type(spec).__name__}")
    if spec.name != name:
        raise ConfigError(f"algorithm {spec.name!r} is registered under another name, {name!r}")


ALGOS: Registry[AlgoSpec] = Registry("algorithm", group="darla.algos", check=check_algo)
"""darla's algorithms and plug-ins from the `darla.algos` entry points."""
ALGOS.register("ppo", AlgoSpec("ppo", PPO, off_policy=False, persistence=SB3Persistence(), actor_critic=True))
ALGOS.register("a2c", AlgoSpec("a2c", A2C, off_policy=False, persistence=SB3Persistence(), actor_critic=True))
ALGOS.register("dqn", AlgoSpec("dqn", DQN, off_policy=True, persistence=SB3Persistence()))
ALGOS.register("mfec", AlgoSpec("mfec", MFEC, off_policy=False, persistence=MFECPersistence()))
