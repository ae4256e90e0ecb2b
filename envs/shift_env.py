"""The entry point of every shifted family: a `gymnasium.Env` that owns its base env and shifts
each frame (not a gym.Wrapper: `.unwrapped` is this env, per the family contract)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from darla.envs.family import get_family
from darla.envs.shift import ShiftSpec
from darla.envs.shift_family import ShiftInfo, shift_info
from darla.envs.shift_ops import ColourKey, FrameOp, Keyer, MaskKey, resize_frame, resize_mask
from darla.errors import ConfigError
from darla.registry import check_choice

UNLIMITED = 2**31 - 1


class ShiftEnv(gymnasium.Env):
    """A base env (darla family or Gymnasium id) whose frames pass through one shift level.

    Observations are uint8 (size, size, 3): a darla base renders at `size`, a Gymnasium base's RGB
    observation or `render()` frame is box-resized to it. Actions, rewards and episode ends are
    the base's; `info["domain"]` names the domain. `base_env` is the base's unwrapped env (what
    collection policies read); `base_params` go to the base's constructor.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 30}  # noqa: RUF012

    def __init__(
        self,
        domain: str | ShiftSpec | Mapping[str, Any] | None = None,
        size: int = 64,
        seed: int | None = None,
        render_mode: str | None = None,
        family: str = "",
        base_params: Mapping[str, Any] | None = None,
    ) -> None:
        if not family:
            raise ConfigError("ShiftEnv needs its family name (e.g. family='CartPole-v1@colour')")
        if not isinstance(size, (int, np.integer)) or size < 8:
            raise ConfigError(f"size must be an integer >= 8, got {size!r}")
        if render_mode is not None:
            check_choice("render mode", render_mode, self.metadata["render_modes"])
        info: ShiftInfo = shift_info(family)
        self.family_name = info.name
        self.base_info = info.base
        """What the family is built on (a darla family or a Gymnasium id, where frames come from)."""
        self.size = int(size)
        self.render_mode = render_mode
        self.domain = self._resolve(domain)
        self.base = self._make_base(seed, dict(base_params or {}))
        self.base_env: Any = self.base.unwrapped
        action_space = self.base.action_space
        if not isinstance(action_space, spaces.Discrete):
            raise ConfigError(f"{self.base_info.name}: shifted families take Discrete actions only")
        self.action_space = action_space
        self._n_actions = int(action_space.n)
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), dtype=np.uint8)
        base = self.base_info
        self.keyer: Keyer | None = None
        if base.has_mask:
            self.keyer = MaskKey()
        elif base.key_colour is not None:
            self.keyer = ColourKey(base.key_colour)
        self._ops: dict[ShiftSpec, FrameOp] = {}
        self._current: tuple[ShiftSpec, FrameOp] | None = None
        self._frame = np.zeros(self.observation_space.shape, dtype=np.uint8)
        self._pending_seed = seed

    # ------------------------------------------------------------------ construction
    def _resolve(self, domain: str | ShiftSpec | Mapping[str, Any] | None) -> ShiftSpec:
        family = get_family(self.family_name)
        spec: ShiftSpec = family.domain(domain)
        bases = self.base_info.domains
        if spec.base_domain not in bases:
            valid = [repr(b) for b in bases]
            raise ConfigError(
                f"domain {spec.name!r}: base_domain {spec.base_domain!r} is not one of the base's "
                f"source domains {', '.join(valid)}"
            )
        return spec

    def _make_base(self, seed: int | None, params: dict[str, Any]) -> Any:
        """The base env without a time limit of its own: the shifted family's TimeLimit (its base's
        limit, or the one asked for) ends the episodes."""
        base = self.base_info
        if base.family is not None:
            return base.family.make(
                self.domain.base_domain,
                seed=seed,
                size=self.size,
                max_episode_steps=UNLIMITED,
                **params,
            )
        kwargs = {**(base.size_kwargs(self.size) if base.size_kwargs else {}), **params}
        if base.frames == "render":
            kwargs["render_mode"] = "rgb_array"
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # keep stdout clean for --json
                return gymnasium.make(
                    base.name, max_episode_steps=UNLIMITED, disable_env_checker=True, **kwargs
                )
        except TypeError as exc:
            raise ConfigError(f"{base.name}: bad base_params {sorted(params)}: {exc}") from None

    def _op(self) -> FrameOp:
        """The current domain's op (built once per domain; `_current` skips hashing the spec)."""
        if self._current is None or self._current[0] is not self.domain:
            op = self._ops.get(self.domain)
            if op is None:
                op = self._ops[self.domain] = self.domain.make_op(self.size, self.keyer)
            self._current = (self.domain, op)
        return self._current[1]

    # ------------------------------------------------------------------ frames
    def _base_frame(self, obs: Any) -> np.ndarray:
        """The unshifted frame of the base's current state, (size, size, 3) uint8; sets the
        keyer's mask when the base exposes one."""
        kind = self.base_info.frames
        if kind == "render":
            frame = self.base.render()
            if frame is None:
                raise ConfigError(f"{self.base_info.name}: render() returned no frame")
        else:
            frame = obs
        frame = resize_frame(np.asarray(frame, dtype=np.uint8), self.size)
        if isinstance(self.keyer, MaskKey):
            self.keyer.mask = resize_mask(self.base_env.background_mask(), self.size)[None]
        return frame

    def _shift(self, frame: np.ndarray) -> np.ndarray:
        self._frame = self._op().apply(frame[None])[0]
        return self._frame

    def random_base_frame(
        self, rng: np.random.Generator, base_domain: str, max_steps: int = 20
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """An unshifted frame of a random base state (a seeded reset, then up to `max_steps` random
        actions), and its background mask if the base exposes one: ground truth's nuisance."""
        options = {"domain": base_domain} if self.base_info.family is not None else None
        obs, _ = self.base.reset(seed=int(rng.integers(2**31 - 1)), options=options)
        for _ in range(int(rng.integers(0, max_steps + 1))):
            obs, _, terminated, truncated, _ = self.base.step(int(rng.integers(self._n_actions)))
            if terminated or truncated:
                break
        frame = self._base_frame(obs)
        mask = self.keyer.mask[0] if isinstance(self.keyer, MaskKey) and self.keyer.mask is not None else None
        return frame, mask

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None:
            seed = self._pending_seed  # the constructor's seed fixes the first episode
        self._pending_seed = None
        super().reset(seed=seed)
        if options and "domain" in options:
            self.domain = self._resolve(options["domain"])
        base_options = {"domain": self.domain.base_domain} if self.base_info.family is not None else None
        obs, info = self.base.reset(seed=seed, options=base_options)
        self._op().reset(self.np_random, 1)
        return self._shift(self._base_frame(obs)), {**info, "domain": self.domain.name}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.base.step(action)
        frame = self._shift(self._base_frame(obs))
        return frame, float(reward), bool(terminated), bool(truncated), {**info, "domain": self.domain.name}

    def render(self) -> np.ndarray | None:
        return self._frame.copy() if self.render_mode == "rgb_array" else None

    def in_view(self) -> bool:
        """The base's `in_view()` (does the frame show the task's objects); a base without one is
        taken to always show its task (a classic-control render draws the whole system)."""
        fn = getattr(self.base_env, "in_view", None)
        return bool(fn()) if callable(fn) else True

    def close(self) -> None:
        self.base.close()
        super().close()
