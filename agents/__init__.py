"""darla.agents: policies on a vision model's features (stage 2, `act`) and the `Agent` transfer uses.

- `ALGOS`: ppo, a2c, dqn, mfec; `MODES`: frozen, finetune, pixels.
- `FrozenEncoderVecEnv` / `EncoderExtractor`: the two ways features reach an SB3 policy.
- `load_agent(act_dir) -> Agent`: `agent.predict(uint8 frames) -> actions`.
"""

from .agent import Agent, load_agent
from .algos import ALGOS, AlgoSpec
from .config import ActConfig
from .factory import build_model, load_model, resolve_hyperparams
from .features import EncoderExtractor, FrozenEncoderVecEnv, encode_batch, parameter_hash
from .mfec import MFEC
from .modes import MODES, Mode

__all__ = [
    "ALGOS",
    "MFEC",
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
