"""darla: vision-based RL transfer (DARLA's see / act / transfer) with a shared model zoo."""

from darla.errors import ArtifactError, ConfigError, DarlaError, TrainingError, UnknownNameError

__version__ = "0.1.0"
__all__ = ["ArtifactError", "ConfigError", "DarlaError", "TrainingError", "UnknownNameError", "__version__"]
