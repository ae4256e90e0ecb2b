"""Exceptions that the CLI turns into a one-line error and exit code 2."""

from __future__ import annotations


class DarlaError(Exception):
    """Base class for errors a user can fix (bad name, shape, path or config)."""


class ConfigError(DarlaError, ValueError):
    """A configuration value is invalid; the message names the value and the valid choices."""


class UnknownNameError(ConfigError):
    """A name is not in a registry; the message lists the valid names."""


class ArtifactError(DarlaError):
    """An artifact on disk is missing, corrupt, foreign or incompatible."""


class TrainingError(DarlaError):
    """Training diverged (NaN/inf) or cannot continue."""
