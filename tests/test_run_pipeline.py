"""`darla run` end to end from the CLI: see -> act -> oracle -> transfer -> report, killed and resumed.

Tiny budgets (32x32 frames, 8-step episodes, one PPO update, one episode per domain): the
tests check orchestration (what runs, what is skipped, what re-runs), not learning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import darla.pipelines.stages.act as act_mod
from darla.cli import main
from darla.config import from_dict, load_yaml
from darla.errors import ConfigError
from darla.pipelines.orchestrate.local import read_run_log
from darla.pipelines.orchestrate.plan import check_readout_layers, match_oracle, plan_policies
from darla.pipelines.orchestrate.run import RunConfig

TINY = [
    "--env", "SeekAvoid",
    "--models", "beta_vae",
    "--modes", "frozen",
    "--seeds", "0",
    "--see.size", "32",
    "--see.frames", "64",
    "--see.workers", "1",
    "--see.threads", "1",
    "--see.params", "latent_dim=4", "channels=[8,8]", "hidden=16",
    "--see.train.steps", "2",
    "--see.train.batch-size", "16",
    "--see.train.image-every", "0",
    "--act.timesteps", "16",
    "--act.n-envs", "1",
    "--act.vec", "dummy",
    "--act.max-episode-steps", "8",
    "--act.eval-freq", "0",
    "--act.eval-episodes", "3",
    "--act.checkpoint-freq", "0",
    "--act.threads", "1",
    "--act.hparams", "n_steps=16", "batch_size=16", "n_epochs=1",
    "--transfer.episodes", "1",
    "--transfer.n-envs", "1",
    "--transfer.vec", "dummy",
    "--transfer.device", "cpu",
    "--probe-frames", "8",
]  # fmt: skip


def _entries(out: Path, since: int) -> dict[tuple[str, str], str]:
    return {(e["stage"], e["name"]): e["status"] for e in read_run_log(out)[since:]}


def test_run_end_to_end_killed_resumed_and_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["run", *TINY, "--out", str(out)]

    # 1. killed during the second act-stage run (the policy: its oracle trains first, as every
    # transfer of its kind waits for it): exit 130, the oracle is finished
    real_run_act = act_mod.run_act
    calls: list[Any] = []

    def killed_on_second(cfg: Any) -> Path:
        calls.append(cfg)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run_act(cfg)

    monkeypatch.setattr(act_mod, "run_act", killed_on_second)
    assert main(args) == 130
    monkeypatch.setattr(act_mod, "run_act", real_run_act)
    first = _entries(out, 0)
    assert first == {
        ("see", "beta_vae"): "ran",
        ("probe", "beta_vae"): "ran",
        ("oracle", "beta_vae/frozen/ppo/s0"): "ran",
        ("act", "beta_vae/frozen/ppo/s0"): "interrupted",
    }
    act_dir = out / "act" / "beta_vae" / "ppo" / "s0"
    oracle_dir = out / "oracle" / "act" / "beta_vae" / "ppo" / "s0"
    see_stamp = (out / "see" / "beta_vae" / "DONE.json").stat().st_mtime_ns
    oracle_stamp = (oracle_dir / "DONE.json").stat().st_mtime_ns

    # 2. re-run: finished stages are skipped, the rest runs, the report is written
    n = len(read_run_log(out))
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert _entries(out, n) == {
        ("see", "beta_vae"): "skipped",
        ("probe", "beta_vae"): "skipped",
        ("oracle", "beta_vae/frozen/ppo/s0"): "skipped",
        ("act", "beta_vae/frozen/ppo/s0"): "ran",
        ("transfer", "beta_vae/frozen/ppo/s0"): "ran",
    }
    assert (out / "see" / "beta_vae" / "DONE.json").stat().st_mtime_ns == see_stamp
    assert (oracle_dir / "DONE.json").stat().st_mtime_ns == oracle_stamp
    assert [row["method"] for row in result["table"]] == ["beta_vae/frozen/ppo"]
    for key in ("report", "plot", "csv"):
        assert Path(result[key]).is_file()
    results = json.loads((out / "transfer" / "beta_vae" / "ppo" / "s0" / "results.json").read_text())
    assert results["oracle"] == str(out / "oracle" / "act" / "beta_vae" / "ppo" / "s0")
    assert "oracle" in results["policies"]
    oracle_cfg = load_yaml(out / "oracle" / "act" / "beta_vae" / "ppo" / "s0" / "config.yaml")
    assert oracle_cfg["domains"] == list(oracle_cfg_targets())
    # nested overrides reached the stages
    assert load_yaml(out / "see" / "beta_vae" / "config.yaml")["train"]["steps"] == 2
    assert load_yaml(act_dir / "config.yaml")["timesteps"] == 16

    # 3. the same command again: everything skipped
    n = len(read_run_log(out))
    assert main(args) == 0
    assert set(_entries(out, n).values()) == {"skipped"}

    # 4. a changed act config re-runs act, oracle and transfer, not see
    n = len(read_run_log(out))
    assert main([*args, "--act.timesteps", "32"]) == 0
    assert _entries(out, n) == {
        ("see", "beta_vae"): "skipped",
        ("probe", "beta_vae"): "skipped",
        ("act", "beta_vae/frozen/ppo/s0"): "ran",
        ("oracle", "beta_vae/frozen/ppo/s0"): "ran",
        ("transfer", "beta_vae/frozen/ppo/s0"): "ran",
    }
    assert (out / "see" / "beta_vae" / "DONE.json").stat().st_mtime_ns == see_stamp
    assert load_yaml(act_dir / "config.yaml")["timesteps"] == 32

    # 5. a changed vision model re-runs everything downstream of it
    n = len(read_run_log(out))
    assert main([*args, "--act.timesteps", "32", "--see.train.steps", "3"]) == 0
    assert set(_entries(out, n).values()) == {"ran"}
    assert len(_entries(out, n)) == 5  # the probe too: it read the old weights


def oracle_cfg_targets() -> tuple[str, ...]:
    from darla.envs import get_family

    return get_family("SeekAvoid").splits["target"]


def test_plan_and_oracle_matching() -> None:
    cfg = from_dict(RunConfig, {"models": ["beta_vae_dae"], "modes": ["frozen", "pixels"], "seeds": [0, 1]})
    plan = plan_policies(cfg, cfg.modes, cfg.seeds)
    assert [p.label for p in plan] == [
        "beta_vae_dae/frozen/ppo/s0",
        "beta_vae_dae/frozen/ppo/s1",
        "pixels/ppo/s0",  # pixels needs no vision model: once per seed, not per model
        "pixels/ppo/s1",
    ]
    oracles = {p: Path(f"/o/{p.label}") for p in plan_policies(cfg, ("frozen",), (0,))}
    assert match_oracle(plan[1], oracles) == Path("/o/beta_vae_dae/frozen/ppo/s0")  # same method, seed 0
    assert match_oracle(plan[3], oracles) == Path("/o/beta_vae_dae/frozen/ppo/s0")  # fallback: same algo
    assert match_oracle(plan[0], {}) is None
    # the quick preset's oracles (frozen, pixels): finetune's ceiling is the end-to-end pixels
    # oracle, not the frozen one (which its own target return passes); frozen keeps its own
    three = from_dict(RunConfig, {"models": ["beta_vae_dae"], "modes": ["frozen", "finetune", "pixels"]})
    quick = {p: Path(f"/o/{p.label}") for p in plan_policies(three, ("frozen", "pixels"), (0,))}
    by_mode = {p.mode: p for p in plan_policies(three, three.modes, (1,))}
    assert match_oracle(by_mode["finetune"], quick) == Path("/o/pixels/ppo/s0")
    assert match_oracle(by_mode["frozen"], quick) == Path("/o/beta_vae_dae/frozen/ppo/s0")
    assert match_oracle(by_mode["pixels"], quick) == Path("/o/pixels/ppo/s0")
    frozen_only = {p: v for p, v in quick.items() if p.mode == "frozen"}
    assert match_oracle(by_mode["finetune"], frozen_only) == Path("/o/beta_vae_dae/frozen/ppo/s0")
    ablation = from_dict(
        RunConfig,
        {
            "models": ["beta_vae_dae", "beta_vae"],
            "modes": ["frozen", "finetune"],
            "seeds": [0],
            "model_modes": {"beta_vae": ["frozen"]},
        },
    )
    assert [p.label for p in plan_policies(ablation, ablation.modes, ablation.seeds)] == [
        "beta_vae_dae/frozen/ppo/s0",
        "beta_vae/frozen/ppo/s0",
        "beta_vae_dae/finetune/ppo/s0",  # beta_vae is limited to frozen
    ]


def test_readouts_plan_one_policy_set_per_readout(tmp_path: Path) -> None:
    """`--readouts latent conv1+cnn`: the frozen policies (and oracles) once per readout, each in its
    own act folder with its own feature_layer and head; the other modes once."""
    from darla.pipelines.orchestrate.plan import act_config
    from darla.pipelines.stages.act import act_dir

    data = {"models": ["beta_vae_dae"], "modes": ["frozen", "pixels"], "seeds": [0], "out": str(tmp_path)}
    cfg = from_dict(RunConfig, {**data, "readouts": ["latent", "conv1+cnn"]})
    plan = plan_policies(cfg, cfg.modes, cfg.seeds)
    assert [p.label for p in plan] == [
        "beta_vae_dae/frozen/ppo/s0",
        "beta_vae_dae/frozen@conv1+cnn/ppo/s0",
        "pixels/ppo/s0",
    ]
    see = tmp_path / "see" / "beta_vae_dae"
    configs = [
        act_config(cfg, see_dir=see, mode="frozen", algo="ppo", seed=0, out=tmp_path, readout=p.readout)
        for p in plan[:2]
    ]
    assert [(c.feature_layer, c.feature_head) for c in configs] == [("", "mlp"), ("conv1", "cnn")]
    assert [act_dir(c).parts[-3] for c in configs] == ["beta_vae_dae", "beta_vae_dae@conv1+cnn"]
    # each readout is its own method: its oracle is the one of the same readout
    oracles = {p: Path(f"/o/{p.label}") for p in plan_policies(cfg, ("frozen",), (0,))}
    assert match_oracle(plan[1], oracles) == Path("/o/beta_vae_dae/frozen@conv1+cnn/ppo/s0")
    assert match_oracle(plan[0], oracles) == Path("/o/beta_vae_dae/frozen/ppo/s0")
    # without readouts, act's own feature_layer is the one readout (and an unchanged plan by default)
    shared = from_dict(RunConfig, {**data, "act": {"feature_layer": "fc"}})
    assert plan_policies(shared, ("frozen",), (0,))[0].label == "beta_vae_dae/frozen@fc/ppo/s0"
    default = from_dict(RunConfig, data)
    assert plan_policies(default, ("frozen",), (0,))[0].label == "beta_vae_dae/frozen/ppo/s0"


def test_readouts_run_end_to_end_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two readouts of one vision model through act, transfer and the report, as two methods."""
    out = tmp_path / "run"
    assert main(["run", *TINY, "--out", str(out), "--no-oracle", "--readouts", "latent", "conv0+cnn"]) == 0
    entries = _entries(out, 0)
    for label in ("beta_vae/frozen/ppo/s0", "beta_vae/frozen@conv0+cnn/ppo/s0"):
        assert entries[("act", label)] == entries[("transfer", label)] == "ran"
    head = json.loads((out / "transfer" / "beta_vae@conv0+cnn" / "ppo" / "s0" / "results.json").read_text())
    assert (head["feature_layer"], head["feature_head"]) == ("conv0", "cnn")
    assert "feature_layer" not in json.loads(
        (out / "transfer" / "beta_vae" / "ppo" / "s0" / "results.json").read_text()
    )
    report = (out / "report" / "report.md").read_text()
    assert "beta_vae/frozen@conv0+cnn/ppo" in report and "beta_vae/frozen/ppo" in report
    # a readout the model lacks names the layers it has, before the run touches its folder
    capsys.readouterr()
    before = (out / "run.yaml").read_text()
    assert main(["run", *TINY, "--out", str(out), "--no-oracle", "--readouts", "conv7"]) != 0
    assert "'conv7'; did you mean 'conv1'? Valid choices: conv0, conv1, fc" in capsys.readouterr().err
    assert (out / "run.yaml").read_text() == before


def test_readout_layer_the_model_lacks_fails_before_any_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown layer is caught on an untrained build of the model, not after minutes of see; the
    global RNG the stages draw from is left as it was."""
    import torch

    out = tmp_path / "run"
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    argv = ["run", *TINY, "--out", str(out), "--no-oracle", "--readouts", "latent", "conv7+cnn"]
    assert main(argv) != 0
    assert "'conv7'; did you mean 'conv1'? Valid choices: conv0, conv1, fc" in capsys.readouterr().err
    assert not out.exists()
    assert torch.equal(torch.rand(4), expected)
    # the check builds each model with the run's params: beta_vae_dae at the preset's 4 convs has a
    # conv3, one with two conv layers does not; act's own feature_layer is checked the same way
    data = {"models": ["beta_vae_dae"], "modes": ["frozen"], "seeds": [0], "out": str(out)}
    check_readout_layers(from_dict(RunConfig, {**data, "readouts": ["latent", "conv3+cnn", "fc"]}))
    two = {"see": {"params": {"channels": [8, 8]}}, "act": {"feature_layer": "conv3"}}
    with pytest.raises(ConfigError, match=r"'conv3'.*Valid choices: conv0, conv1, fc"):
        check_readout_layers(from_dict(RunConfig, {**data, **two}))


def test_oracle_modes_the_run_does_not_train_are_left_out() -> None:
    """`--modes frozen` on a preset with frozen and pixel oracles trains the frozen oracle only, and
    with `--no-oracle` the oracle modes do not matter."""
    both = {"modes": ["frozen"], "oracle_modes": ["frozen", "pixels"]}
    assert from_dict(RunConfig, both).planned_oracle_modes == ("frozen",)
    assert from_dict(RunConfig, {"modes": ["pixels"], "oracle_modes": ["frozen"], "oracle": False})
    assert from_dict(RunConfig, {"modes": ["frozen", "pixels"]}).planned_oracle_modes == ("frozen", "pixels")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"modes": ["frozen", "pixles"]}, "did you mean 'pixels'"),
        ({"models": ["beta_vea"]}, "beta_vae"),
        ({"algos": ["ppo", "ppo"]}, "must not repeat"),
        ({"modes": ["pixels"], "oracle_modes": ["frozen"]}, "none of the oracle modes \\['frozen'\\]"),
        ({"modes": ["pixels"], "oracle_modes": ["frozn"]}, "did you mean 'frozen'"),
        ({"env": "SeekAvoyd"}, "SeekAvoid"),
        ({"readouts": ["latent", "conv1+cnnn"]}, "head of readout 'conv1\\+cnnn'.*did you mean 'cnn'"),
        ({"readouts": ["latent+cnn"]}, "the cnn head reads a convolutional map"),
        ({"readouts": ["+cnn"]}, "is not '<layer>' or '<layer>\\+<head>'"),
        ({"readouts": ["conv1", "conv1"]}, "readouts must not repeat"),
        ({"jobs": -1}, "jobs must be >= 0"),
        (
            {"modes": ["pixels"], "see": {"size": 32}},
            "'pixels' uses NatureCNN.* at least 36x36; got 32x32 .*see.size",
        ),
        ({"act": {"timesteps": 0}}, "timesteps"),
        ({"see": {"framez": 3}}, "did you mean .frames."),
        ({"models": ["beta_vae"], "model_modes": {"beta_vea": ["frozen"]}}, "did you mean 'beta_vae'"),
        (
            {"modes": ["frozen"], "model_modes": {"beta_vae_dae": ["pixels"]}},
            "mode of model_modes.beta_vae_dae",
        ),
        # PPO's rollout length given to every algorithm: refused before any stage runs
        ({"algos": ["ppo", "mfec"], "act": {"hparams": {"n_steps": 8}}}, "hyperparameter for mfec 'n_steps'"),
        ({"act": {"algo_hparams": {"ppoo": {"n_steps": 8}}}}, "did you mean 'ppo'"),
        ({"algos": ["dqn"], "act": {"algo_hparams": {"dqn": {"n_stepz": 8}}}}, "hyperparameter for dqn"),
    ],
)
def test_bad_run_configs_are_clear_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(RunConfig, data)


def test_smoke_preset_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`darla run --preset smoke`: every stage and the report, from the CLI as a user runs it."""
    assert main(["run", "--preset", "smoke", "--out", str(tmp_path / "smoke"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert Path(result["report"]).is_file() and result["table"]
    stages = {e["stage"] for e in read_run_log(tmp_path / "smoke")}
    assert {"see", "probe", "act", "transfer"} <= stages
    assert "## Features: what a linear probe reads" in Path(result["report"]).read_text()
    results = json.loads(next((tmp_path / "smoke" / "transfer").rglob("results.json")).read_text())
    from darla.envs import get_family

    family = get_family("SeekAvoid")
    every_domain = {d for split in ("source", "target", "ood") for d in family.splits[split]}
    assert every_domain <= set(results["domains"])


def test_every_zoo_model_and_learner_runs_on_the_smoke_preset(tmp_path: Path) -> None:
    """The step-5 zoo (infogan, dc_ign, iin and scan on a beta_vae) and every learner (PPO, A2C, DQN,
    MFEC) through `darla run --preset smoke`: the preset's per-algorithm hyperparameters keep PPO's
    rollout settings away from the others."""
    out = tmp_path / "zoo"
    argv = [
        "run", "--preset", "smoke", "--out", str(out), "--no-oracle", "--modes", "frozen",
        "--see.params", "latent_dim=12",  # iin needs a unit per SeekAvoid factor (9)
        "--see.model-params", "iin={base: beta_vae}", "scan={base: beta_vae}",
    ]  # fmt: skip
    assert main([*argv, "--models", "infogan", "dc_ign", "beta_vae", "iin", "scan"]) == 0
    assert main([*argv, "--models", "beta_vae", "--algos", "a2c", "dqn", "mfec", "--no-report"]) == 0
    methods = [f"{m}/ppo" for m in ("infogan", "dc_ign", "beta_vae", "iin", "scan")]
    methods += [f"beta_vae/{a}" for a in ("a2c", "dqn", "mfec")]
    for method in methods:
        results = json.loads((out / "transfer" / method / "s0" / "results.json").read_text())
        assert set(results["domains"]) >= {"marble_blueyellow", "brick_greenred"}, method
    report = (out / "report" / "report.md").read_text()
    assert all(f"{m}/frozen/ppo" in report for m in ("infogan", "dc_ign", "iin", "scan"))
    recorded = load_yaml(out / "act" / "beta_vae" / "mfec" / "s0" / "config.yaml")
    assert "n_steps" not in recorded["hparams"] and not recorded["algo_hparams"]  # merged, not kept


def test_models_built_on_a_run_model_train_after_it(tmp_path: Path) -> None:
    """One mechanism for every model built on another (iin's and scan's base, beta_vae_dae's DAE):
    the planner trains the one named first, once, and the see stage reads it from the artifact."""
    from darla.pipelines.orchestrate.plan import plan_run

    def see_plan(data: dict[str, Any]) -> list[tuple[str, tuple[Path, ...]]]:
        cfg = from_dict(RunConfig, {"out": str(tmp_path), "modes": ["frozen"], "probe_frames": 0, **data})
        return [(t.label, t.needs) for t in plan_run(cfg) if t.kind == "see"]

    data = {"models": ["iin", "beta_vae"], "see": {"model_params": {"iin": {"base": "beta_vae"}}}}
    assert see_plan(data) == [("beta_vae", ()), ("iin", (tmp_path / "see" / "beta_vae",))]
    # a base outside the run is a see folder and is read as it is (not planned)
    outside = {**data, "see": {"model_params": {"iin": {"base": "elsewhere/see/vae"}}}}
    assert see_plan(outside) == [("iin", ()), ("beta_vae", ())]
    # beta_vae_dae's DAE is planned once, before it, also when the run names it (paper preset)
    assert see_plan({"models": ["beta_vae_dae"]}) == [
        ("dae", ()),
        ("beta_vae_dae", (tmp_path / "see" / "dae",)),
    ]
    assert see_plan({"models": ["beta_vae_dae", "dae"]}) == [
        ("dae", ()),
        ("beta_vae_dae", (tmp_path / "see" / "dae",)),
    ]
    cycle = {
        "models": ["iin", "scan"],
        "see": {"model_params": {"iin": {"base": "scan"}, "scan": {"base": "iin"}}},
    }
    with pytest.raises(ConfigError, match="cycle: iin -> scan -> iin"):
        see_plan(cycle)


def test_parallel_jobs_give_the_same_results(tmp_path: Path) -> None:
    """Stages in worker processes (`--jobs 2`) give what one process gives: jobs only buy time."""
    base = ["run", *TINY, "--seeds", "0", "1", "--no-oracle", "--no-report"]
    assert main([*base, "--out", str(tmp_path / "one"), "--jobs", "1"]) == 0
    assert main([*base, "--out", str(tmp_path / "two"), "--jobs", "2"]) == 0
    entries = _entries(tmp_path / "two", 0)
    assert entries == {
        ("see", "beta_vae"): "ran",
        ("probe", "beta_vae"): "ran",
        **{(stage, f"beta_vae/frozen/ppo/s{s}"): "ran" for stage in ("act", "transfer") for s in (0, 1)},
    }
    probes = [
        json.loads((tmp_path / r / "probe" / "beta_vae" / "probe.json").read_text()) for r in ("one", "two")
    ]
    assert probes[0]["accuracy"] == probes[1]["accuracy"]
    for seed in ("s0", "s1"):
        one, two = (
            json.loads((tmp_path / run / "transfer" / "beta_vae" / "ppo" / seed / "results.json").read_text())
            for run in ("one", "two")
        )
        assert one["policies"]["agent"] == two["policies"]["agent"]
    # a second parallel run skips everything
    n = len(read_run_log(tmp_path / "two"))
    assert main([*base, "--out", str(tmp_path / "two"), "--jobs", "2"]) == 0
    assert set(_entries(tmp_path / "two", n).values()) == {"skipped"}


def test_parallel_stages_start_when_what_they_read_is_done(tmp_path: Path) -> None:
    """With 2 jobs the pixel policy (which needs no vision model) trains while the vision model
    does, and every transfer starts only after its own policy is trained."""
    out = tmp_path / "graph"
    args = ["run", *TINY, "--modes", "frozen", "pixels", "--see.size", "40", "--no-oracle", "--no-report"]
    assert main([*args, "--out", str(out), "--jobs", "2"]) == 0
    log = {(e["stage"], e["name"]): e for e in read_run_log(out)}
    start = {key: e["time"] - e["seconds"] for key, e in log.items()}
    end = {key: e["time"] for key, e in log.items()}
    see = ("see", "beta_vae")
    assert start[("act", "pixels/ppo/s0")] < end[see]
    assert start[("act", "beta_vae/frozen/ppo/s0")] >= end[see]
    for label in ("pixels/ppo/s0", "beta_vae/frozen/ppo/s0"):
        assert start[("transfer", label)] >= end[("act", label)]
