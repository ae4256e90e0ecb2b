"""darla.pipelines.analysis: the statistics and figures of a backbone sweep, over plain data.

Input: `TrialResult`s (one per trained policy, built by the caller from transfer artifacts).
Output: rliable aggregates with stratified-bootstrap CIs, probability of improvement, transfer
ratios with paired-bootstrap CIs, DARLA's Table 1, Spearman's rho of disentanglement against
transfer, figures, results.csv / summary.json / report.md, and tensorboard HParams sessions.
Nothing here reads run folders; every function is deterministic for a seed.
"""

from darla.pipelines.analysis.config import AnalysisConfig
from darla.pipelines.analysis.correlation import (
    DISENTANGLEMENT_METRICS,
    OUTCOMES,
    Correlation,
    DisentanglementTransfer,
    disentanglement_vs_transfer,
    spearman_ci,
)
from darla.pipelines.analysis.estimate import Interval
from darla.pipelines.analysis.rl_stats import (
    AGGREGATES,
    PoiMatrix,
    aggregate_ci,
    numpy_global_seed,
    poi_matrix,
    probability_of_improvement,
    ratio_ci,
)
from darla.pipelines.analysis.sweep import (
    SweepAnalysis,
    SweepReport,
    analyse,
    sweep_markdown,
    write_sweep_report,
)
from darla.pipelines.analysis.tables import (
    TABLE1_ROWS,
    MethodSummary,
    Table1,
    Table1Row,
    table1,
    table1_markdown,
)
from darla.pipelines.analysis.tensorboard import (
    trial_hparams,
    trial_metrics,
    write_hparams,
    write_trial_hparams,
)
from darla.pipelines.analysis.trials import SPLITS, ScoreMatrix, TrialResult, results_csv, split_scores

__all__ = [
    "AGGREGATES",
    "DISENTANGLEMENT_METRICS",
    "OUTCOMES",
    "SPLITS",
    "TABLE1_ROWS",
    "AnalysisConfig",
    "Correlation",
    "DisentanglementTransfer",
    "Interval",
    "MethodSummary",
    "PoiMatrix",
    "ScoreMatrix",
    "SweepAnalysis",
    "SweepReport",
    "Table1",
    "Table1Row",
    "TrialResult",
    "aggregate_ci",
    "analyse",
    "disentanglement_vs_transfer",
    "numpy_global_seed",
    "poi_matrix",
    "probability_of_improvement",
    "ratio_ci",
    "results_csv",
    "spearman_ci",
    "split_scores",
    "sweep_markdown",
    "table1",
    "table1_markdown",
    "trial_hparams",
    "trial_metrics",
    "write_hparams",
    "write_sweep_report",
    "write_trial_hparams",
]
