"""The ENV argument of the harness: a registered environment id or ``module:callable``.

``EnvRef("mamujoco/HalfCheetah-2x3-v0")`` names an environment of :func:`envs.make`;
``EnvRef("pettingzoo.classic.rps_v2:parallel_env", {"max_cycles": 10})`` names any importable
callable that returns a PettingZoo ``ParallelEnv``. An :class:`EnvRef` is a picklable factory
(calling it builds a fresh env), so it travels to vector-env workers, local processes and Ray
workers. :func:`check_env` builds one env and turns every way that can fail into an
:class:`EnvError` whose message names the bad value and what was expected.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pettingzoo.utils.env import AECEnv, ParallelEnv

import envs


class EnvError(ValueError):
    """The ENV argument, its keyword arguments or the environment it builds are not usable."""


@dataclass(frozen=True)
class EnvRef:
    """A registered id or ``module:callable``, with keyword arguments; calling it builds the env."""

    env: str
    """Registered id (``envs.registered_ids()``) or ``module:callable``."""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``envs.make`` or of the callable."""

    @property
    def is_registered(self) -> bool:
        """Whether :attr:`env` is an id of :func:`envs.make` (else a ``module:callable``)."""
        return self.env in envs.registered_ids()

    @property
    def family(self) -> str:
        """``matrix``, ``continuous``, ``mamujoco``, ``merge`` for registered ids (the part
        before the slash), ``custom`` for a ``module:callable``."""
        if self.is_registered:
            return self.env.split("/", 1)[0]
        return "custom"

    def with_kwargs(self, **extra: Any) -> EnvRef:
        """The same environment with more (or overriding) keyword arguments."""
        return EnvRef(self.env, {**self.kwargs, **extra})

    def factory(self) -> Callable[..., Any]:
        """The callable that builds the env (without calling it)."""
        if self.is_registered:
            return lambda **kw: envs.make(self.env, **kw)
        module_name, sep, attr = self.env.partition(":")
        if not sep or not module_name or not attr:
            known = ", ".join(envs.registered_ids())
            raise EnvError(
                f"unknown environment {self.env!r}; expected a registered id ({known}) or "
                "'module:callable' returning a PettingZoo ParallelEnv"
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise EnvError(f"cannot import module {module_name!r} of environment {self.env!r}: {exc}") from exc
        target: Any = module
        for part in attr.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise EnvError(f"module {module_name!r} has no attribute {attr!r} (environment {self.env!r})") from None
        if not callable(target):
            raise EnvError(f"{self.env!r} is a {type(target).__name__}, not a callable returning a ParallelEnv")
        return target  # type: ignore[no-any-return]

    def __call__(self) -> ParallelEnv:
        """Build a fresh environment."""
        return self.factory()(**dict(self.kwargs))


def check_env(ref: EnvRef) -> ParallelEnv:
    """Build one env of ``ref`` and check that it is a ParallelEnv; returns it (the caller closes it).

    Raises:
        EnvError: unknown id, unimportable module, keyword arguments the environment rejects,
            or an object that is not a PettingZoo ParallelEnv.
    """
    maker = ref.factory()
    try:
        env = maker(**dict(ref.kwargs))
    except EnvError:
        raise
    except ImportError as exc:  # an optional dependency (e.g. the mujoco or highway extra)
        raise EnvError(str(exc)) from exc
    except (TypeError, ValueError, KeyError) as exc:
        raise EnvError(f"environment {ref.env!r} rejected the keyword arguments {dict(ref.kwargs)!r}: {exc}") from exc
    if isinstance(env, AECEnv):
        env.close()
        raise EnvError(
            f"{ref.env!r} returned an AEC environment ({type(env).__name__}); expected a PettingZoo "
            "ParallelEnv (PettingZoo modules offer one as 'parallel_env', or wrap it with "
            "pettingzoo.utils.conversions.aec_to_parallel)"
        )
    if not isinstance(env, ParallelEnv):
        raise EnvError(f"{ref.env!r} returned a {type(env).__name__}; expected a PettingZoo ParallelEnv")
    return env


def parse_env_kwargs(items: Sequence[str]) -> dict[str, Any]:
    """``["k=-50", "episode_length=25", "name=abc"]`` -> ``{"k": -50, "episode_length": 25, "name": "abc"}``.

    Values are Python literals (numbers, ``True``/``False``/``None``, strings in quotes, lists,
    tuples, dicts) or, failing that, plain strings; ``true``/``false``/``null`` are accepted too.

    Raises:
        EnvError: an item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise EnvError(f"bad environment keyword argument {item!r}; expected KEY=VALUE with a Python name as KEY")
        out[key] = _literal(text.strip())
    return out


_JSON_WORDS = {"true": True, "false": False, "null": None, "none": None}


def _literal(text: str) -> Any:
    if text.lower() in _JSON_WORDS:
        return _JSON_WORDS[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
