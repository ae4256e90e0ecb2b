"""Typed readers of the three stage outputs: what a see, act or transfer folder holds and what made it.

Every consumer of a stage folder (the next stage, the report, probe, evaluate, the planner) reads it
here, never by opening its `config.yaml` or by parsing folder names. A folder's `config.yaml` holds
the stage's config (its fields, with defaults resolved) plus the values the stage resolved from the
stages it read (`RESOLVED`: hashes and paths of upstream artifacts); the readers split the two, so
the user-facing config classes hold only what a user sets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from darla.config import from_dict, load_yaml
from darla.errors import ArtifactError

from .files import CONFIG, DONE, read_json

C = TypeVar("C")

SPLITS = ("source", "target", "ood")
"""A family's domain splits: the sources (trained on), held-out targets (DARLA's zero-shot transfer)
and out-of-distribution domains (values no source shows)."""
SAMPLED_ROLE = "agent_sampled"
"""results.json role of the agent evaluated with sampled actions (transfer `--sampled`)"""

MODEL_FILE = "model.pt"
POLICY_FILE = "policy.zip"
RESULTS_FILE = "results.json"

RESOLVED: dict[str, tuple[str, ...]] = {
    # what each stage records beside its config fields (older darla wrote some as config fields)
    "see": ("upstream", "upstream_hash", "dae_path", "dae_params", "dae_train"),
    "act": ("vision_model", "vision_checkpoint", "vision_hash", "expert_hash"),
    "transfer": ("act_hash", "oracle_hash"),
}


def _read_config(path: Path, what: str) -> dict[str, Any]:
    if not path.is_dir():
        raise ArtifactError(f"{what} folder not found: {path}")
    cfg_path = path / CONFIG
    if not cfg_path.is_file():
        raise ArtifactError(f"{path} holds no {CONFIG}: not a darla {what} folder")
    data = load_yaml(cfg_path)
    if not isinstance(data, dict):
        raise ArtifactError(f"{cfg_path} does not hold a mapping: not a darla {what} folder")
    return data


def model_folder_config(ref: str | Path) -> dict[str, Any] | None:
    """The recorded config of any darla folder holding a model (a see folder, or a `darla validate`
    model folder), given the folder or its model.pt; None when there is none."""
    path = Path(ref)
    path = path.parent if path.suffix == ".pt" else path
    try:
        return _read_config(path, "model")
    except ArtifactError:
        return None


def _done(path: Path) -> dict[str, Any] | None:
    marker = path / DONE
    if not marker.is_file():
        return None
    data = read_json(marker)
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class StageArtifact:
    """A stage folder: its path, its config (as written), and its completion record if finished."""

    path: Path
    raw: dict[str, Any] = field(repr=False)
    done: dict[str, Any] | None = field(repr=False)

    kind = "stage"

    @property
    def finished(self) -> bool:
        return self.done is not None

    def require_finished(self, hint: str) -> None:
        if self.done is None:
            raise ArtifactError(f"{self.kind} folder {self.path} is not finished (no {DONE}): {hint}")

    @property
    def completion_hash(self) -> str:
        """Identity of the finished stage: its config hash plus when it finished, so a stage run
        again (even with the same config) is a new identity and what was computed from it is redone."""
        self.require_finished("run its stage first")
        assert self.done is not None
        return f"{self.done.get('config_hash', '')}@{self.done.get('finished_at', '')}"

    @property
    def config_fields(self) -> dict[str, Any]:
        """The config as its stage's config class takes it (the resolved values removed)."""
        return {k: v for k, v in self.raw.items() if k not in RESOLVED.get(self.kind, ())}

    def config(self, cls: type[C]) -> C:
        """The config as an instance of the stage's config class (a clear error if it does not fit)."""
        try:
            return from_dict(cls, self.config_fields)
        except Exception as exc:
            raise ArtifactError(f"{self.path / CONFIG} does not fit {cls.__name__}: {exc}") from None

    @property
    def env(self) -> str:
        return str(self.raw.get("env") or "")

    def domains_seen(self) -> list[Any]:
        """Every value under a config key naming 'domain' (names or specs, nested): what this stage's
        training exposed it to, for the leak check."""
        return _domain_values(self.raw)


def _domain_values(config: Mapping[str, Any]) -> list[Any]:
    found: list[Any] = []
    for key, value in config.items():
        if "domain" in key.lower():
            found.append(value)
        elif isinstance(value, Mapping):
            found.extend(_domain_values(value))
    return found


@dataclass(frozen=True)
class SeeArtifact(StageArtifact):
    """A see folder: a trained vision model, the env and source domains it saw, what it was built on."""

    kind = "see"

    @classmethod
    def read(cls, ref: str | Path, *, finished: bool = True) -> SeeArtifact:
        """The see folder `ref` names (the folder, or its model.pt)."""
        path = Path(ref)
        path = path.parent if path.suffix == ".pt" else path
        raw = _read_config(path, "see")
        if "env" not in raw or "model" not in raw:
            raise ArtifactError(f"{path / CONFIG} names no env and model: not a see folder")
        artifact = cls(path, raw, _done(path))
        if finished:
            artifact.require_finished("run or resume `darla see` first")
        return artifact

    @property
    def name(self) -> str:
        """The folder's name under see/ (the model's, or `--name`)."""
        return self.path.name

    @property
    def model(self) -> str:
        return str(self.raw["model"])

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.raw.get("domains") or ())

    @property
    def size(self) -> int:
        return int(self.raw.get("size") or 64)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.raw.get("params") or {})

    @property
    def checkpoint(self) -> Path:
        return self.path / MODEL_FILE

    @cached_property
    def upstream(self) -> dict[str, Path]:
        """The trained models this one was built on, by the field that names them (a beta_vae_dae's
        DAE, an iin's or scan's base). Folders written before darla recorded them name theirs in
        the `base` parameter or `dae_path`."""
        recorded = self.raw.get("upstream")
        if isinstance(recorded, dict):
            return {k: Path(v["path"] if isinstance(v, dict) else v) for k, v in recorded.items()}
        legacy = {"base": self.params.get("base"), "dae_path": self.raw.get("dae_path")}
        return {k: _folder(v) for k, v in legacy.items() if v}


def _folder(ref: Any) -> Path:
    path = Path(str(ref))
    return path.parent if path.suffix == ".pt" else path


@dataclass(frozen=True)
class ActArtifact(StageArtifact):
    """An act folder: a trained policy, the env and domains it trained in, the vision model it reads."""

    kind = "act"

    @classmethod
    def read(cls, path: str | Path, *, finished: bool = True) -> ActArtifact:
        path = Path(path)
        raw = _read_config(path, "act")
        if not raw.get("env") or not raw.get("algo"):
            if "model" in raw and "env" in raw:
                raise ArtifactError(
                    f"{path} is a see folder (a vision model), not an act folder (a policy): "
                    "pass the folder `darla act` wrote, e.g. <run>/act/<model>/<algo>/s<seed>"
                )
            raise ArtifactError(f"{path / CONFIG} names no env and algo: not a darla act folder")
        artifact = cls(path, raw, _done(path))
        if finished:
            artifact.require_finished("run or resume `darla act` first")
        return artifact

    @property
    def algo(self) -> str:
        return str(self.raw["algo"])

    @property
    def mode(self) -> str:
        return str(self.raw.get("mode") or "frozen")

    @property
    def seed(self) -> int:
        return int(self.raw.get("seed") or 0)

    @property
    def size(self) -> int:
        return int(self.raw.get("size") or 64)

    @property
    def max_episode_steps(self) -> int | None:
        value = self.raw.get("max_episode_steps")
        return None if value is None else int(value)

    @property
    def name(self) -> str | None:
        """The `--name` a user gave the policy's folder (None: darla's default name)."""
        value = self.raw.get("name")
        return str(value) if value else None

    @property
    def vision_model(self) -> str | None:
        """The zoo name of the vision model the policy reads (None for the pixel baseline)."""
        value = self.raw.get("vision_model")
        return str(value) if value and self.mode != "pixels" else None

    @property
    def readout(self) -> dict[str, str]:
        """What a frozen policy reads where it is not the latent code (`feature_layer`, `feature_head`)."""
        return {
            k: str(self.raw[k])
            for k in ("feature_layer", "feature_head")
            if self.raw.get(k) not in (None, "", "mlp")
        }

    @property
    def policy_file(self) -> Path:
        return self.path / POLICY_FILE

    def location(self) -> tuple[Path, Path] | None:
        """(run folder, path below its act/) of this policy: where its run keeps the stages that
        follow it (transfer writes <run>/transfer/<that path>). From the recorded `out` when the
        folder is still there, else from the layout <run>/act/<...> (a run that was moved); None
        for a folder outside any run's act/."""
        out = self.raw.get("out")
        if out:
            try:
                return Path(out), self.path.relative_to(Path(out) / "act")
            except ValueError:
                pass
        parts = self.path.parts
        if "act" not in parts[:-1]:
            return None
        i = len(parts) - 1 - parts[::-1].index("act")
        return (Path(*parts[:i]) if i > 0 else Path(".")), Path(*parts[i + 1 :])

    @cached_property
    def see(self) -> SeeArtifact | None:
        """The see folder whose model the policy reads (or, for pixels, took its env from)."""
        ref = self.raw.get("see")
        if not ref:
            return None
        return SeeArtifact.read(ref, finished=False)

    @cached_property
    def expert(self) -> ActArtifact | None:
        """The policy this one was cloned from (`act --expert`), if any."""
        ref = self.raw.get("expert")
        return ActArtifact.read(ref, finished=False) if ref else None

    def describe(self) -> dict[str, Any]:
        """Who the policy is, for results and tables: env, vision model (or 'pixels'), mode, algo, seed."""
        vision = self.vision_model
        if vision is None and self.mode != "pixels":
            see = self.see
            vision = see.model if see is not None else None
        described: dict[str, Any] = {
            "act": str(self.path),
            "env": self.env,
            "vision": vision or "pixels",
            "mode": self.mode,
            "algo": self.algo,
            "agent_seed": self.seed,
            "act_name": self.name,
        }
        if self.raw.get("expert"):
            described["expert"] = str(self.raw["expert"])
        return {**described, **self.readout}


@dataclass(frozen=True)
class TransferResult:
    """A transfer folder's `results.json`: one policy's returns per domain, the floor and oracle."""

    path: Path
    data: dict[str, Any] = field(repr=False)

    @classmethod
    def read(cls, folder: str | Path) -> TransferResult:
        folder = Path(folder)
        file = folder / RESULTS_FILE
        data = read_json(file)
        if not isinstance(data, dict) or "domains" not in data or "policies" not in data:
            raise ArtifactError(f"{file} is not a darla transfer results file")
        return cls(folder, data)

    @property
    def env(self) -> str:
        return str(self.data.get("env") or "")

    @property
    def seed(self) -> int:
        return int(self.data.get("agent_seed") or 0)

    @cached_property
    def act(self) -> ActArtifact | None:
        """The act folder the results are of (None when it is gone)."""
        ref = self.data.get("act")
        if not ref:
            return None
        try:
            return ActArtifact.read(ref, finished=False)
        except ArtifactError:
            return None

    def split_mean(self, split: str, role: str = "agent") -> float:
        value = self.data["policies"].get(role, {}).get("split_means", {}).get(split)
        return float(value) if value is not None else float("nan")

    def domain_mean(self, domain: str, role: str = "agent") -> float:
        entry = self.data["domains"].get(domain, {}).get(role)
        return float(entry["mean"]) if entry and entry.get("mean") is not None else float("nan")

    def with_data(self, data: dict[str, Any]) -> TransferResult:
        return dataclasses.replace(self, data=data)
