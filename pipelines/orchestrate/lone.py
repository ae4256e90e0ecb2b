"""`darla see`: one vision model, after what it is built on (beta_vae_dae's DAE, planned as in a run).

    darla see --env SeekAvoid --model beta_vae_dae --preset quick --out runs/exp1

trains `runs/exp1/see/dae/` first (DARLA's DAE, with `model_params.dae` and `model_train.dae`),
then `runs/exp1/see/beta_vae_dae/`; each is skipped when done and resumed when interrupted.
"""

from __future__ import annotations

from typing import Any

from darla.cli import Command
from darla.pipelines.orchestrate.plan import see_closure
from darla.pipelines.stages.see import SeeConfig, run_see, see_summary


def run_see_plan(cfg: SeeConfig) -> dict[str, Any]:
    """Train `cfg`'s model and, first, the models it is built on; returns the model's summary."""
    path = None
    for step in see_closure([cfg]):
        path = run_see(step)
    assert path is not None
    return {**see_summary(path), "model": cfg.model}


SEE = Command(
    words=("see",),
    config=SeeConfig,
    run=run_see_plan,
    help="stage 1: collect source frames, train a vision model",
)
