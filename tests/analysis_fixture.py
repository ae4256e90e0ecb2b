"""A hand-made backbone sweep for the analysis tests: six methods, 21 trials, known structure.

Each vision model's MIG sets how much of its source return its policies lose on the targets
(more MIG, less loss), so the disentanglement correlation is positive by construction; its
modularity is the same for every model, so that correlation is undefined.
"""

from __future__ import annotations

from typing import Any

from darla.pipelines.analysis import TrialResult
from darla.seeding import make_rng

SPLIT_OF = {"src_a": "source", "src_b": "source", "tgt_a": "target", "tgt_b": "target", "far": "ood"}


def make_trial(
    method: str,
    vision: str,
    mode: str,
    seed: int,
    *,
    level: float,
    kept: float,
    see_seed: int | None = None,
    see_params: dict[str, Any] | None = None,
    scores: dict[str, float] | None = None,
    algo: str = "ppo",
    env: str = "SeekAvoid",
) -> TrialResult:
    """Source returns around `level`, target returns around `kept * level`, seeded noise."""
    rng = make_rng(seed, method, see_seed)
    returns = {}
    for domain, split in SPLIT_OF.items():
        centre = level if split == "source" else level * kept
        returns[domain] = float(centre + rng.normal(0.0, 0.3))
    return TrialResult(
        method=method,
        vision=vision,
        mode=mode,
        algo=algo,
        seed=seed,
        env=env,
        returns=returns,
        splits=dict(SPLIT_OF),
        random={d: -0.5 for d in SPLIT_OF},
        oracle={d: level + 1.0 for d in SPLIT_OF if SPLIT_OF[d] == "target"},
        oracle_label="oracle beta_vae_dae/frozen/ppo" if mode != "pixels" else "oracle pixels/ppo",
        see_seed=see_seed,
        see_params=see_params or {},
        act_params={"n_steps": 128, "learning_rate": 3e-4},
        disentanglement=scores,
        episodes=50,
    )


def _scores(mig: float) -> dict[str, float]:
    return {
        "mig": mig,
        "dci.disentanglement": 0.9 * mig + 0.05,
        "factor_vae": 0.5 + 0.4 * mig,
        "sap": mig / 2,
        "modularity": 0.5,
        "mig.room": mig,  # a detail key: in results.csv, not correlated by default
    }


def frozen_model(
    vision: str, params: dict[str, Any], migs: tuple[float, ...], seeds_each: int
) -> list[TrialResult]:
    """Policies on `len(migs)` vision models of one backbone, `seeds_each` agent seeds per model."""
    trials = []
    seed = 0
    for see_seed, mig in enumerate(migs):
        for _ in range(seeds_each):
            trials.append(
                make_trial(
                    f"{vision}/frozen/ppo",
                    vision,
                    "frozen",
                    seed,
                    level=8.0,
                    kept=0.2 + 0.8 * mig,
                    see_seed=see_seed,
                    see_params=params,
                    scores=_scores(mig),
                )
            )
            seed += 1
    return trials


def sweep_trials() -> list[TrialResult]:
    trials = frozen_model("beta_vae_dae", {"beta": 1.0}, (0.30, 0.45), 2)
    trials += frozen_model("beta_vae", {"beta": 4.0}, (0.20, 0.60), 2)
    trials += frozen_model("dae", {}, (0.05,), 3)
    trials += frozen_model("ae", {}, (0.10, 0.15), 2)
    trials += [
        make_trial(
            "beta_vae_dae/finetune/ppo",
            "beta_vae_dae",
            "finetune",
            s,
            level=9.0,
            kept=0.9,
            see_seed=0,
            see_params={"beta": 1.0},
        )
        for s in range(3)
    ]
    trials += [make_trial("pixels/ppo", "pixels", "pixels", s, level=10.0, kept=0.85) for s in range(3)]
    return trials
