"""darla.agents: policies on a vision model's features (stage 2, `act`) and the `Agent` transfer uses.

- `ALGOS` (alias `AGENTS`): ppo, a2c, dqn; `MODES`: frozen, finetune, pixels.
- `FrozenEncoderVecEnv` / `EncoderExtractor`: the two ways features reach an SB3 policy.
- `load_agent(act_dir) -> Agent`: `agent.predict(uint8 frames) -> actions`.
"""

from .agent import Agent, load_agent
from .config import ActConfig
from .factory import AGENTS, ALGOS, MODES, AlgoSpec, Mode, build_model, load_model, resolve_hyperparams
from .features import EncoderExtractor, FrozenEncoderVecEnv, encode_batch, parameter_hash
from .mfec import MFEC  # noqa: F401  (registers "mfec" in ALGOS: darla act --algo mfec)

__all__ = [
    "AGENTS",
    "ALGOS",
    "MODES",
    "ActConfig",
    "Agent",
    "AlgoSpec",
    "EncoderExtractor",
    "FrozenEncoderVecEnv",
    "Mode",
    "build_model",
    "encode_batch",
    "load_agent",
    "load_model",
    "parameter_hash",
    "resolve_hyperparams",
]
