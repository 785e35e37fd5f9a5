"""Learner configurations per algorithm and environment family, and their fields as options.

:func:`algo_config` picks the preset of an environment family and applies overrides:

==============  ==============================  ===========================================
family          PPO family (step/mappo/...)     MADDPG
==============  ==============================  ===========================================
``matrix``      ``STEPConfig.matrix_games()``   ``MADDPGConfig()`` (its defaults are the
                                                matrix-game ones)
``continuous``  ``STEPConfig.continuous_games()``  (Box actions: MADDPG does not apply)
``mamujoco``    ``STEPConfig.mujoco()``         (Box actions: MADDPG does not apply)
``merge``       ``STEPConfig.merge()``          ``MADDPGConfig(gamma=0.99)``
anything else   ``STEPConfig()``                ``MADDPGConfig(gamma=0.99)``
==============  ==============================  ===========================================

Where the values of each preset come from is documented on the classmethods themselves and in
the README. MADDPG's ``gamma = 0.99`` outside the matrix games: its default 0.95 (from the
MADDPG paper's 25-step particle tasks) looks only ~20 steps ahead, less than a merge episode
(100 steps); 0.99 is what the PPO family uses there.

:func:`config_options` describes every field of :class:`~agents.config.STEPConfig` and of
:class:`~agents.maddpg.MADDPGConfig` (type, general default, docstring) so that the command
line offers each of them without listing them by hand: a field added to either dataclass
appears as an option automatically.
"""

from __future__ import annotations

import ast
import enum
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any

from agents.config import STEPConfig, Variant
from agents.maddpg import MADDPGConfig

ALGOS = ("step", "mappo", "ippo", "happo", "maddpg")
"""Algorithms of the harness: the PPO family on the shared machinery (a :class:`Variant`) and
MADDPG."""

AlgoConfig = STEPConfig | MADDPGConfig

_PPO_PRESETS: dict[str, Callable[..., STEPConfig]] = {
    "matrix": STEPConfig.matrix_games,
    "continuous": STEPConfig.continuous_games,
    "mamujoco": STEPConfig.mujoco,
    "merge": STEPConfig.merge,
}
_MADDPG_PRESETS: dict[str, dict[str, Any]] = {"matrix": {}}
_MADDPG_DEFAULT: dict[str, Any] = {"gamma": 0.99}


def preset_name(family: str, algo: str) -> str:
    """How the preset of ``algo`` on an environment ``family`` is made, for logs and docs."""
    check_algo(algo)
    if algo == "maddpg":
        extra = _MADDPG_PRESETS.get(family, _MADDPG_DEFAULT)
        args = ", ".join(f"{k}={v!r}" for k, v in extra.items())
        return f"MADDPGConfig({args})"
    maker = _PPO_PRESETS.get(family)
    return f"STEPConfig.{maker.__name__}()" if maker is not None else "STEPConfig()"


def check_algo(algo: str) -> None:
    """Raise ``ValueError`` naming ``algo`` unless it is one of :data:`ALGOS`."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}; expected one of {list(ALGOS)}")


def config_class(algo: str) -> type[STEPConfig] | type[MADDPGConfig]:
    """The configuration dataclass of ``algo``."""
    check_algo(algo)
    return MADDPGConfig if algo == "maddpg" else STEPConfig


def algo_config(family: str, algo: str, overrides: Mapping[str, Any] | None = None) -> AlgoConfig:
    """The preset of ``algo`` for an environment ``family``, with ``overrides`` applied.

    Raises:
        ValueError: unknown algorithm, a field that ``algo``'s configuration does not have, or
            a value the configuration rejects.
    """
    overrides = dict(overrides or {})
    cls = config_class(algo)
    known = {f.name for f in fields(cls)} - {"variant"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"{cls.__name__} of {algo!r} has no field(s) {unknown}; its fields are {sorted(known)}")
    if algo == "maddpg":
        return MADDPGConfig(**{**_MADDPG_PRESETS.get(family, _MADDPG_DEFAULT), **overrides})
    maker = _PPO_PRESETS.get(family, STEPConfig)
    return maker(variant=Variant(algo), **overrides)


def config_to_dict(config: AlgoConfig) -> dict[str, Any]:
    """Plain data (JSON and ``torch.load(weights_only=True)`` friendly)."""
    return config.to_dict()


def config_from_dict(algo: str, data: Mapping[str, Any]) -> AlgoConfig:
    """Inverse of :func:`config_to_dict` for ``algo``."""
    if algo == "maddpg":
        return MADDPGConfig(**dict(data))
    return STEPConfig.from_dict(dict(data))


# --- fields as command-line options -------------------------------------------------------------
@dataclass(frozen=True)
class ConfigOption:
    """One configuration field offered on the command line."""

    name: str
    """Field name (the option is ``--name`` with dashes)."""
    parse: Callable[[str], Any] | None
    """Converts the option's text to the field's value; ``None`` for a bool (a flag pair)."""
    metavar: str
    """How ``--help`` shows the value."""
    help: str
    """Docstring(s) and general default(s), per configuration class that has the field."""
    owners: tuple[str, ...]
    """Configuration classes that have the field: ``"STEPConfig"`` and/or ``"MADDPGConfig"``."""
    choices: tuple[str, ...] | None = None


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of the dataclass ``cls`` (read from its source)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (e.g. a frozen build): no docstrings
        return {}
    tree = ast.parse(source)
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _parser_for(tp: Any) -> tuple[Callable[[str], Any] | None, str, tuple[str, ...] | None]:
    """(text -> value, metavar, choices) for a field type; ``None`` parser for plain bool."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        base, metavar, choices = _parser_for(inner[0] if len(inner) == 1 else Any)
        base_fn = base if base is not None else _parse_bool

        def optional(text: str) -> Any:
            return None if text.lower() in ("none", "null") else base_fn(text)

        return optional, f"{metavar}|none", choices
    if tp is bool:
        return None, "", None
    if tp is int:
        return _parse_int, "INT", None
    if tp is float:
        return float, "FLOAT", None
    if tp is str:
        return str, "TEXT", None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = tuple(str(m.value) for m in tp)
        return str, "{" + ",".join(values) + "}", values
    if origin is typing.Literal:
        values = tuple(str(a) for a in args)
        return (lambda text: _literal_choice(text, args)), "{" + ",".join(values) + "}", values
    return ast.literal_eval, "VALUE", None  # tuples, lists, ... as Python literals


def _parse_int(text: str) -> int:
    value = float(text)  # accept 1e6 and 1_000_000
    if not value.is_integer():
        raise ValueError(f"{text!r} is not an integer")
    return int(value)


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def _literal_choice(text: str, allowed: tuple[Any, ...]) -> Any:
    for value in allowed:
        if str(value) == text:
            return value
    raise ValueError(f"{text!r} is not one of {[str(a) for a in allowed]}")


def config_options() -> list[ConfigOption]:
    """Every field of :class:`STEPConfig` and :class:`MADDPGConfig` except ``variant`` (picked
    by ``--algo``), sorted by name; a field both have is one option that sets both."""
    per_name: dict[str, list[tuple[str, Any, str, Any]]] = {}
    for cls in (STEPConfig, MADDPGConfig):
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        for f in fields(cls):
            if f.name == "variant":
                continue
            default = f.default if f.default is not MISSING else None
            per_name.setdefault(f.name, []).append((cls.__name__, hints[f.name], docs.get(f.name, ""), default))
    options = []
    for name in sorted(per_name):
        entries = per_name[name]
        parse, metavar, choices = _parser_for(entries[0][1])
        if len(entries) > 1:  # the same field in both: parse with the more general type
            alt = [_parser_for(e[1]) for e in entries[1:]]
            if any(a[1].endswith("|none") for a in alt) and not metavar.endswith("|none"):
                parse, metavar, choices = alt[0]
        parts = []
        for owner, _, doc, default in entries:
            label = "STEP/MAPPO/IPPO/HAPPO" if owner == "STEPConfig" else "MADDPG"
            shown = default.value if isinstance(default, enum.Enum) else default
            parts.append(f"[{label}] {doc} (general default {shown!r})")
        options.append(ConfigOption(name=name, parse=parse, metavar=metavar, help=" ".join(parts),
                                    owners=tuple(e[0] for e in entries), choices=choices))
    return options


def overrides_for(algo: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides that ``algo``'s configuration has a field for."""
    known = {f.name for f in fields(config_class(algo))}
    return {k: v for k, v in overrides.items() if k in known}


def parse_config_overrides(items: list[str]) -> dict[str, Any]:
    """``["field=value", ...]`` -> overrides of STEPConfig fields (values as Python literals;
    a bare word is a string). Raises ValueError naming the bad item or field."""
    known = {f.name for f in fields(STEPConfig)} - {"variant"}
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in known:
            raise ValueError(f"{item!r} is not FIELD=VALUE with FIELD one of {sorted(known)}")
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = text
    return out
