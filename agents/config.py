"""The act stage's config: what to train (algo x mode), where (env, source domains), on what features.

It lives in `darla.agents` (not in the pipeline) because a trained `Agent` carries it: dependencies
point `pipelines -> agents`. `ActSettings` are the training settings every policy of a run shares
(`darla run --act.timesteps ...`); `ActConfig` adds what names one policy (its vision model, mode,
algorithm, seed, folder). Values act resolves from its inputs (the vision model's content hash, an
expert's) are no config fields: the act folder's artifact records them (`darla.artifacts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from darla.errors import ConfigError
from darla.registry import unknown_name_message

from .algos import ALGOS
from .modes import MODES
from .readouts import FEATURE_HEADS, FEATURE_NORMS, FeatureHead, FeatureNorm


@dataclass
class ActSettings:
    """How policies train: budget, vectorisation, evaluation, checkpoints, what frozen policies read."""

    hash_exclude: ClassVar[tuple[str, ...]] = (
        "device",
        "threads",
        "progress",
        "algo_hparams",  # merged into `hparams` by act before anything is hashed or written
        "expert",  # named by its policy's content hash (the artifact's expert_hash)
    )
    hash_omit_default: ClassVar[tuple[str, ...]] = (
        "feature_norm",
        "feature_norm_frames",
        "feature_layer",
        "feature_head",
        "imitate_epochs",
        "imitate_lr",
    )

    timesteps: int = 100_000
    """total env steps (summed over the vectorised workers)"""
    n_envs: int = 4
    """vectorised env workers"""
    vec: Literal["auto", "dummy", "subproc"] = "auto"
    """vec env type: dummy (one process; frozen mode encodes the batch), subproc (one process per
    worker, each encoding its own frames in frozen mode) or auto (= dummy, the faster at 64x64 on
    2 cores: `darla bench act`)"""
    domain_mode: Literal["per_worker", "per_episode"] = "per_episode"
    """per_episode: each reset draws a source domain (balanced whatever n_envs); per_worker: worker i
    always uses domain i mod k (balanced only when n_envs is a multiple of k: with 4 envs over
    SeekAvoid's 3 sources one domain got half the experience and its object set was solved best)"""
    size: int | None = None
    """frame size in pixels (default: the vision model's; 64 for pixels without a see folder)"""
    max_episode_steps: int | None = None
    """episode time limit (default: the env family's)"""
    hparams: dict[str, Any] = field(default_factory=dict)
    """algorithm hyperparameters overriding agents/hyperparams/<algo>.yaml (e.g. learning_rate=1e-4)"""
    algo_hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    """per-algorithm defaults for presets ({algo: {name: value}}); `hparams` override them. Only the
    chosen algo's entry is used (merged into hparams): what PPO takes is an error for DQN or MFEC,
    so a preset that serves several algorithms keeps them apart"""
    feature_norm: FeatureNorm = "none"
    """frozen mode: 'standardize' shifts and scales each feature by its mean and std over frames of
    the training domains (computed before training, saved in the act folder), so no latent
    dominates the policy's input by its scale alone; other modes ignore it"""
    feature_norm_frames: int = 4096
    """frames of the training domains (see's 'mixed' collector, seeded by the act seed) that the
    standardisation statistics come from"""
    feature_layer: str = ""
    """frozen mode: read the vision model at this encoder layer (conv0, conv1, ..., fc: its
    activations, flattened) instead of its latent code (empty, DARLA's choice). The encoder stays
    frozen; only what the policy reads changes"""
    feature_head: FeatureHead = "mlp"
    """frozen mode: what reads the features. mlp (SB3's MlpPolicy on the feature vector) or cnn (a
    small trained conv net on a convolutional `feature_layer`'s map, then the MLP heads: NatureCNN's
    spatial prior on frozen features; its PPO defaults are NatureCNN's, `heads: cnn` in
    hyperparams/ppo.yaml)"""
    expert: Path | None = None
    """act folder of a finished policy to clone instead of training by RL (behaviour cloning): the
    expert plays `timesteps` steps in the training domains and this policy's actor is fit to its
    action distributions. Cloning the pixel baseline onto frozen features asks whether the features
    (rather than RL) are what fails to transfer. ppo and a2c only"""
    imitate_epochs: int = 15
    """with --expert: passes over the expert's steps"""
    imitate_lr: float = 1e-3
    """with --expert: Adam learning rate of the fit"""
    eval_freq: int = 10_000
    """evaluate on the source domains every this many env steps (0: only at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation, spread evenly over the source domains"""
    checkpoint_freq: int = 10_000
    """save a resumable checkpoint every this many env steps (0: never)"""
    device: str = "auto"
    """torch device for the policy and the encoder"""
    threads: int = 1
    """torch threads (0: all cores). 1 is fastest here: the env workers use the other cores, and torch
    threads that outnumber free cores spin (measured 6x slower PPO under load)"""
    progress: bool = True
    """show SB3's progress bar (only when stderr is a terminal)"""

    def validate(self) -> None:
        for label, value, low in (
            ("timesteps", self.timesteps, 1),
            ("n_envs", self.n_envs, 1),
            ("eval_freq", self.eval_freq, 0),
            ("eval_episodes", self.eval_episodes, 1),
            ("checkpoint_freq", self.checkpoint_freq, 0),
            ("threads", self.threads, 0),
            ("feature_norm_frames", self.feature_norm_frames, 2),
        ):
            if value < low:
                raise ConfigError(f"{label} must be >= {low}, got {value}")
        if self.expert is not None:
            if self.imitate_epochs < 1:
                raise ConfigError(f"imitate_epochs must be >= 1, got {self.imitate_epochs}")
            if not self.imitate_lr > 0:
                raise ConfigError(f"imitate_lr must be > 0, got {self.imitate_lr}")
        if self.feature_norm not in FEATURE_NORMS:
            raise ConfigError(unknown_name_message("feature_norm", self.feature_norm, list(FEATURE_NORMS)))
        if self.feature_head not in FEATURE_HEADS:
            raise ConfigError(unknown_name_message("feature_head", self.feature_head, list(FEATURE_HEADS)))
        if self.size is not None and self.size < 8:
            raise ConfigError(f"size must be >= 8 pixels, got {self.size}")
        for algo, values in self.algo_hparams.items():
            ALGOS.get(algo)  # a typo is an error; other algorithms' entries are unused (presets)
            if not isinstance(values, dict):
                raise ConfigError(f"algo_hparams.{algo} must be a mapping of hyperparameters, got {values!r}")

    def effective_hparams(self, algo: str) -> dict[str, Any]:
        """The preset defaults of `algo`, then the explicit overrides."""
        return {**self.algo_hparams.get(algo, {}), **self.hparams}


@dataclass
class ActConfig(ActSettings):
    """Train an SB3 policy in the source domains on a vision model's frozen (or fine-tuned) features."""

    hash_exclude: ClassVar[tuple[str, ...]] = (*ActSettings.hash_exclude, "out", "see", "name")

    see: Path | None = None
    """see folder (stage 1 output) whose vision model the policy uses; optional for mode 'pixels'
    (then it only supplies the env and source domains)"""
    env: str | None = None
    """env family (default: the one the see folder trained on)"""
    domains: tuple[str, ...] = ()
    """domains to train in (default: the see folder's source domains, else the family's source split)"""
    algo: str = "ppo"
    """RL algorithm: ppo, a2c, dqn"""
    mode: str = "frozen"
    """frozen (DARLA: policy on frozen features), finetune (encoder trained end to end), pixels (NatureCNN)"""
    seed: int = 0
    """one seed fixes the policy init, the env workers and the evaluation episodes"""
    out: Path = Path("runs/exp")
    """experiment folder; the policy goes to <out>/act/<name>/<algo>/s<seed>/"""
    name: str | None = None
    """folder name under <out>/act/ (default: the see folder's name, '<see>@conv1+cnn' for a frozen
    policy reading an encoder layer, '<see>-finetune' for finetune, 'pixels' for pixels)"""

    def validate(self) -> None:
        super().validate()
        spec = ALGOS.get(self.algo)
        MODES.get(self.mode)
        if self.expert is not None and not spec.actor_critic:
            clonable = [name for name, s in ALGOS.items() if s.actor_critic]
            raise ConfigError(
                f"--expert clones into an actor-critic policy: algo must be one of "
                f"{', '.join(clonable)}, got {self.algo!r}"
            )
        if len(set(self.domains)) != len(self.domains):
            raise ConfigError(f"domains must not repeat, got {list(self.domains)}")


@dataclass(frozen=True)
class PolicyInputs:
    """What act resolves from the stages a policy reads: the vision model (zoo name, checkpoint
    path, content hash) and an expert's policy hash. Recorded in the act folder's config.yaml beside
    the config; the hashes are part of the stage's identity, the path is not (a run may move)."""

    vision_model: str | None = None
    vision_checkpoint: str | None = None
    vision_hash: str | None = None
    expert_hash: str | None = None

    @classmethod
    def of(cls, recorded: dict[str, Any]) -> PolicyInputs:
        """From an act folder's recorded values (its artifact's raw config)."""
        return cls(
            **{
                k: recorded.get(k)
                for k in ("vision_model", "vision_checkpoint", "vision_hash", "expert_hash")
            }
        )

    def identity(self) -> dict[str, Any]:
        """The stage-hash part: the vision model and its hash always, the expert's when there is one."""
        out: dict[str, Any] = {"vision_model": self.vision_model, "vision_hash": self.vision_hash}
        if self.expert_hash is not None:
            out["expert_hash"] = self.expert_hash
        return out

    def notes(self) -> dict[str, Any]:
        return {"vision_checkpoint": self.vision_checkpoint}
