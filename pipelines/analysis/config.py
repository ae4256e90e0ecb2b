"""How a sweep is analysed: the aggregate, the bootstrap, which scores and policies take part."""

from __future__ import annotations

from dataclasses import dataclass

from darla.errors import ConfigError
from darla.pipelines.analysis.estimate import check_bootstrap
from darla.pipelines.analysis.trials import SPLITS
from darla.registry import check_choice


@dataclass
class AnalysisConfig:
    """Estimates of a backbone sweep: rliable aggregates, bootstrap CIs, the disentanglement check."""

    aggregate: str = "iqm"
    """aggregate over runs x domains: iqm (rliable's interquartile mean), mean, median"""
    reps: int = 2000
    """bootstrap resamples of every interval"""
    poi_reps: int = 1000
    """resamples of each probability of improvement (rliable runs a Mann-Whitney test per resample)"""
    level: float = 0.95
    """confidence level of the intervals"""
    seed: int = 0
    """bootstrap seed: the same trials give the same intervals"""
    metrics: tuple[str, ...] = ()
    """disentanglement scores to correlate with transfer; empty = every headline score present"""
    correlation_modes: tuple[str, ...] = ("frozen",)
    """policy modes whose trials enter the disentanglement correlation"""
    poi_split: str = "target"
    """domains on which backbones are compared by probability of improvement"""

    def validate(self) -> None:
        from darla.pipelines.analysis.rl_stats import AGGREGATES

        AGGREGATES.get(self.aggregate)
        check_bootstrap(self.reps, self.level)
        check_bootstrap(self.poi_reps, self.level)
        check_choice("poi_split", self.poi_split, SPLITS)
        if not self.correlation_modes:
            raise ConfigError("correlation_modes is empty: name at least one mode (frozen, finetune)")
