"""Multi-Agent MuJoCo (MA-MuJoCo): one robot, several agents, each driving some of its joints.

The robot is one of Gymnasium's MuJoCo ``-v5`` tasks; its actuated joints are split between
agents, every agent observes its own joints, their neighbours up to ``agent_obsk`` hops away in
the robot's body graph, and the robot's root, and all agents share one team reward. This is the
benchmark of Section 5.2 / Appendix A.1 of the STEP paper (Peng et al. 2021's MA-MuJoCo).
The environment holds a gymnasium-robotics ``mamujoco_v1.parallel_env`` and adds what a
Stackelberg learner needs: a ``state_space``, a configurable episode length, argument checks,
cached spaces and a headless ``rgb_array`` renderer.

=====================  ==========================================================
Import                 ``envs.make("mamujoco/HalfCheetah-6x1-v0")``
Registered ids         ``mamujoco/HalfCheetah-{2x3,3x2,6x1}-v0``,
                       ``mamujoco/Ant-{2x4,4x2,8x1}-v0``,
                       ``mamujoco/ManyAgentAnt-{2x3,3x2,6x1}-v0``
Actions                continuous (``Box(-1, 1, (joints of the agent,), float32)``)
Parallel API           yes (a PettingZoo ``ParallelEnv``); ``stmg.wrap`` makes it an AEC game
Agents                 ``agent_0`` .. ``agent_{n-1}`` (n = the number before the ``x``)
Observations           ``Box(-inf, inf, (size,), float64)``, sizes below
State                  ``Box(-inf, inf, (size,), float64)``: the single-agent ``-v5`` obs
Reward                 one shared team reward (the single-agent ``-v5`` reward)
=====================  ==========================================================

Split notation ``NxK``: N agents with K actuated joints each (for ManyAgentAnt: N agents with
K body segments each, a segment being a torso with two legs = 4 joints).

Joint partitions
----------------
Joint names are the MuJoCo joint names of the actuators (``env.agent_joints``); inside each
agent the list order is its action order (action index 0 first).

====================  =======  =============================================================
Scenario / split      Source   Joints per agent
====================  =======  =============================================================
HalfCheetah 2x3       library  0: bthigh, bshin, bfoot | 1: fthigh, fshin, ffoot
HalfCheetah 3x2       ours     0: bfoot, bshin | 1: bthigh, ffoot | 2: fshin, fthigh
HalfCheetah 6x1       library  0: bthigh | 1: bshin | 2: bfoot | 3: fthigh | 4: fshin | 5: ffoot
Ant 2x4               library  0: hip_1, ankle_1, hip_2, ankle_2 | 1: hip_3, ankle_3, hip_4, ankle_4
Ant 4x2               library  0: hip_1, ankle_1 | 1: hip_2, ankle_2 | 2: hip_3, ankle_3 |
                               3: hip_4, ankle_4
Ant 8x1               ours     0: hip_1 | 1: ankle_1 | 2: hip_2 | 3: ankle_2 | 4: hip_3 |
                               5: ankle_3 | 6: hip_4 | 7: ankle_4
ManyAgentAnt 2x3      fixed    0: segments 0-2 | 1: segments 3-5
ManyAgentAnt 3x2      fixed    0: segments 0-1 | 1: segments 2-3 | 2: segments 4-5
ManyAgentAnt 6x1      fixed    agent i: segment i
====================  =======  =============================================================

Source: *library* = gymnasium-robotics' own split; *ours* = built here from the library's
unsplit graph and passed as ``agent_factorization``; *fixed* = the library's split with its
node ids repaired (below).

Ant legs: 1 front left, 2 front right, 3 back left, 4 back right. A ManyAgentAnt segment ``s``
has joints ``hip1_s, ankle1_s, hip2_s, ankle2_s`` (that order in the action); segment 0 is the
front (the body the healthy-height check uses).

* *HalfCheetah 3x2* follows the 3x2 split of earlier (mujoco-py era) MA-MuJoCo forks, for
  comparability with results reported on them: the joints listed back leg then front leg, each
  foot first (``bfoot bshin bthigh ffoot fshin fthigh``), cut into consecutive pairs. So agent 1
  holds ``bthigh`` and ``ffoot``, which are not adjacent in the body graph (its neighbours at
  ``agent_obsk=1`` are ``bshin``, ``fthigh`` and ``fshin``).
* *Ant 8x1*: one agent per joint, legs in the order of the library's 4x2 split.
* *ManyAgentAnt (fixed)*: gymnasium-robotics 1.4.2's ``ManySegmentAnt`` factorisation points
  most nodes at the wrong ``qpos``/``qvel`` entries (agents observe other segments' joints or
  the root's x/y) and its segment links join copies of nodes, so neighbouring segments never
  see each other. This module rebuilds the same graph (same joints per agent, same bodies,
  edges hip-ankle, hip1-hip2 inside a segment and a hyperedge over the four hips of two
  consecutive segments) with every node's ids read from the MuJoCo model by joint name.

Observation sizes (``agent_obsk=1``, default categories)
--------------------------------------------------------
==================  ================================  =====
Scenario / split    Observation size per agent        State
==================  ================================  =====
HalfCheetah 2x3     12, 12                            17
HalfCheetah 3x2     10, 12, 11                        17
HalfCheetah 6x1     9, 9, 8, 9, 9, 8                  17
Ant 2x4             63, 63                            105
Ant 4x2             42, 42, 42, 42                    105
Ant 8x1             29, 32, 29, 32, 29, 32, 29, 32    105
ManyAgentAnt 2x3    163, 163                          311
ManyAgentAnt 3x2    113, 115, 113                     311
ManyAgentAnt 6x1    63, 65, 65, 65, 65, 63            311
==================  ================================  =====

Local observation categories: HalfCheetah ``qpos, qvel`` of own joints and ``qpos`` of
neighbours; Ant/ManyAgentAnt additionally the clipped external contact forces (``cfrc_ext``)
of the bodies of its own joints. Every agent also observes the root (HalfCheetah: z, pitch
and root velocities; Ant: torso height, orientation quaternion and 6 velocities).

Rewards and episode end
-----------------------
Every agent gets the same reward: the single-agent ``-v5`` reward (forward velocity minus
control cost, plus a healthy bonus and minus a contact cost for the ants). Ant and
ManyAgentAnt *terminate* (all agents at once) when the torso leaves the healthy height
range (Gymnasium's ``healthy_z_range``, (0.2, 1.0) by default: a policy that throws the
torso up above 1.0, which trained ManyAgentAnt policies do in some episodes right after the
start, ends the episode too); HalfCheetah never terminates. All agents are *truncated* after ``episode_length``
steps. There is no per-agent death: ``agents`` empties only at the end of the episode.
``infos[agent]`` is the single-agent info dict (a separate copy per agent).

Arguments
---------
``MaMuJoCoEnv(scenario, split, agent_obsk=1, episode_length=1000, render_mode=None, **kwargs)``

* ``scenario``: ``"HalfCheetah"``, ``"Ant"`` or ``"ManyAgentAnt"``.
* ``split``: HalfCheetah and ManyAgentAnt ``"2x3"``, ``"3x2"``, ``"6x1"``; Ant ``"2x4"``,
  ``"4x2"``, ``"8x1"``.
* ``agent_obsk``: how many hops of neighbouring joints each agent observes (0 = own joints).
* ``episode_length``: steps until truncation (positive int).
* ``render_mode``: ``None`` or ``"rgb_array"`` (off-screen; see Rendering).
* ``kwargs``: ``local_categories`` / ``global_categories`` go to gymnasium-robotics; the rest
  to the Gymnasium ``-v5`` env (e.g. ``ctrl_cost_weight``, ``reset_noise_scale``, ``width``,
  ``height``). Arguments this class sets itself (``max_episode_steps``, ``agent_conf``,
  ``agent_factorization``, ``gym_env``) are refused.

Rendering
---------
``render()`` returns an ``(height, width, 3)`` uint8 frame, drawn off-screen. MuJoCo picks its
OpenGL backend from ``MUJOCO_GL``; if it is unset when an ``rgb_array`` env is built, this
module sets ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``) to the first headless backend whose
library it finds: ``egl`` (Debian/Ubuntu: ``apt-get install libegl1 libegl-mesa0
libgl1-mesa-dri``), then ``osmesa`` (``apt-get install libosmesa6``). With neither,
``render()`` raises a ``RuntimeError`` that says so.

Version history
---------------
* v0: first version (gymnasium-robotics 1.4.2 ``mamujoco_v1``, Gymnasium MuJoCo ``-v5``).
"""

from __future__ import annotations

import ctypes.util
import os
import tempfile
from collections.abc import Mapping
from numbers import Integral
from typing import Any

import gymnasium
import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium_robotics.envs.multiagent_mujoco import mamujoco_v1, many_segment_ant
from gymnasium_robotics.envs.multiagent_mujoco.obsk import HyperEdge, Node, get_parts_and_edges
from pettingzoo.utils.env import ParallelEnv

__all__ = ["SPLITS", "MaMuJoCoEnv", "find_headless_backend", "joint_partition"]

SPLITS: Mapping[str, tuple[str, ...]] = {
    "HalfCheetah": ("2x3", "3x2", "6x1"),
    "Ant": ("2x4", "4x2", "8x1"),
    "ManyAgentAnt": ("2x3", "3x2", "6x1"),
}
"""The supported scenarios and, for each, its splits."""

RENDER_MODES = ("rgb_array",)

_LIBRARY_SCENARIO = {"HalfCheetah": "HalfCheetah", "Ant": "Ant", "ManyAgentAnt": "ManySegmentAnt"}

# Splits gymnasium-robotics does not define, as node labels of its full (unsplit) graph.
_OWN_PARTITIONS: dict[tuple[str, str], tuple[tuple[str, ...], ...]] = {
    ("HalfCheetah", "3x2"): (("bfoot", "bshin"), ("bthigh", "ffoot"), ("fshin", "fthigh")),
    ("Ant", "8x1"): (
        ("hip1",), ("ankle1",), ("hip2",), ("ankle2",),
        ("hip3",), ("ankle3",), ("hip4",), ("ankle4",),
    ),
}

_LIBRARY_KWARGS = frozenset({"local_categories", "global_categories"})
_RESERVED_KWARGS = {
    "max_episode_steps": "use episode_length",
    "agent_conf": "it is set from split",
    "agent_factorization": "it is set from split",
    "gym_env": "the single-agent env is built from scenario",
}

# (MUJOCO_GL value, ctypes library name, how to install it on Debian/Ubuntu)
_HEADLESS_BACKENDS = (
    ("egl", "EGL", "apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri"),
    ("osmesa", "OSMesa", "apt-get install libosmesa6"),
)


def find_headless_backend() -> str | None:
    """The headless MuJoCo OpenGL backend to use: ``MUJOCO_GL`` if set, else the first of
    ``egl``/``osmesa`` whose library is installed, else ``None``. Changes nothing."""
    configured = os.environ.get("MUJOCO_GL")
    if configured:
        return configured
    for backend, library, _ in _HEADLESS_BACKENDS:
        if ctypes.util.find_library(library):
            return backend
    return None


def _how_to_get_a_backend() -> str:
    how = "; or ".join(f"{b}: `{cmd}` and MUJOCO_GL={b}" for b, _, cmd in _HEADLESS_BACKENDS)
    return f"Install a headless backend and select it: {how}"


def _no_backend_message() -> str:
    tried = ", ".join(f"MUJOCO_GL={b} (lib{lib})" for b, lib, _ in _HEADLESS_BACKENDS)
    return f"no headless OpenGL backend for MuJoCo found; tried {tried}. {_how_to_get_a_backend()}"


def _check_arguments(
    scenario: Any, split: Any, agent_obsk: Any, episode_length: Any, render_mode: Any,
    kwargs: Mapping[str, Any],
) -> None:
    if not isinstance(scenario, str) or scenario not in SPLITS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {list(SPLITS)}")
    if not isinstance(split, str) or split not in SPLITS[scenario]:
        raise ValueError(
            f"unknown split {split!r} for scenario {scenario!r}; expected one of "
            f"{list(SPLITS[scenario])}"
        )
    if isinstance(agent_obsk, bool) or not isinstance(agent_obsk, Integral) or agent_obsk < 0:
        raise ValueError(f"agent_obsk must be an int >= 0, got {agent_obsk!r}")
    if (
        isinstance(episode_length, bool)
        or not isinstance(episode_length, Integral)
        or episode_length <= 0
    ):
        raise ValueError(f"episode_length must be a positive int, got {episode_length!r}")
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(
            f"unsupported render_mode {render_mode!r}; expected None or one of {list(RENDER_MODES)}"
        )
    for key, why in _RESERVED_KWARGS.items():
        if key in kwargs:
            raise ValueError(f"argument {key}={kwargs[key]!r} is not accepted: {why}")


def _joint_name(model: Any, joint_id: int) -> str:
    return str(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, int(joint_id)))


def _many_agent_ant_factorization(split: str, model: Any) -> dict[str, Any]:
    """The library's ManySegmentAnt graph with node ids read from ``model`` by joint name."""
    parts, _, globals_ = get_parts_and_edges("ManySegmentAnt", split)
    actuator_of = {_joint_name(model, model.actuator_trnid[a, 0]): a for a in range(model.nu)}
    fixed: dict[str, Node] = {}
    for part in parts:
        for node in part:
            joint = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, node.label)
            if joint < 0 or node.label not in actuator_of:
                raise RuntimeError(f"ManyAgentAnt model has no actuated joint {node.label!r}")
            fixed[node.label] = Node(
                node.label,
                int(model.jnt_qposadr[joint]),
                int(model.jnt_dofadr[joint]),
                int(actuator_of[node.label]),
                body_fn=node.body_fn,
                bodies=tuple(node.bodies),
                extra_obs=dict(node.extra_obs),
            )
    n_segments = len(fixed) // 4
    edges: list[HyperEdge] = []
    for s in range(n_segments):
        hip1, ankle1, hip2, ankle2 = (fixed[f"{j}_{s}"] for j in ("hip1", "ankle1", "hip2", "ankle2"))
        edges += [HyperEdge(ankle1, hip1), HyperEdge(ankle2, hip2), HyperEdge(hip1, hip2)]
        if s:
            edges.append(HyperEdge(fixed[f"hip1_{s - 1}"], fixed[f"hip2_{s - 1}"], hip1, hip2))
    partition = [tuple(fixed[node.label] for node in part) for part in parts]
    return {"partition": partition, "edges": edges, "globals": globals_}


def _own_factorization(scenario: str, split: str) -> dict[str, Any]:
    """A split the library lacks, built from the nodes of its unsplit graph."""
    (whole,), edges, globals_ = get_parts_and_edges(_LIBRARY_SCENARIO[scenario], None)
    by_label = {node.label: node for node in whole}
    labels = _OWN_PARTITIONS[(scenario, split)]
    used = [label for part in labels for label in part]
    if sorted(used) != sorted(by_label):  # every actuated joint exactly once
        raise RuntimeError(f"partition of {scenario} {split} does not cover {sorted(by_label)}")
    partition = [tuple(by_label[label] for label in part) for part in labels]
    return {"partition": partition, "edges": edges, "globals": globals_}


def joint_partition(scenario: str, split: str) -> tuple[tuple[str, ...], ...]:
    """The MuJoCo joint names each agent drives, in action order (builds the env once)."""
    env = MaMuJoCoEnv(scenario, split)
    try:
        return tuple(env.agent_joints[a] for a in env.possible_agents)
    finally:
        env.close()


class MaMuJoCoEnv(ParallelEnv):  # type: ignore[misc]
    """Multi-Agent MuJoCo as a PettingZoo ``ParallelEnv``; see the module docstring.

    Attributes:
        scenario, split, agent_obsk, episode_length, render_mode: the arguments.
        inner: the gymnasium-robotics ``MultiAgentMujocoEnv`` this env drives.
        agent_joints: for each agent, the MuJoCo joint names it actuates, in action order.
        state_space: the space of ``state()``.
        num_steps: steps taken since the last ``reset``.
    """

    metadata = {"name": "mamujoco_v0", "render_modes": list(RENDER_MODES), "is_parallelizable": True}

    def __init__(
        self,
        scenario: str,
        split: str,
        agent_obsk: int = 1,
        episode_length: int = 1000,
        render_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        _check_arguments(scenario, split, agent_obsk, episode_length, render_mode, kwargs)
        self.scenario = scenario
        self.split = split
        self.agent_obsk = int(agent_obsk)
        self.episode_length = int(episode_length)
        self.render_mode = render_mode
        self._backend: str | None = None
        if render_mode == "rgb_array":
            self._backend = find_headless_backend()
            if self._backend is not None and not os.environ.get("MUJOCO_GL"):
                os.environ["MUJOCO_GL"] = self._backend
                os.environ.setdefault("PYOPENGL_PLATFORM", self._backend)

        library_scenario = _LIBRARY_SCENARIO[scenario]
        library_kwargs: dict[str, Any] = {
            "agent_obsk": self.agent_obsk,
            "render_mode": render_mode,
        }
        if scenario == "ManyAgentAnt":
            gym_kwargs = {k: v for k, v in kwargs.items() if k not in _LIBRARY_KWARGS}
            library_kwargs.update({k: v for k, v in kwargs.items() if k in _LIBRARY_KWARGS})
            gym_env = self._make_many_agent_ant(split, render_mode, gym_kwargs)
            library_kwargs["gym_env"] = gym_env
            library_kwargs["agent_factorization"] = _many_agent_ant_factorization(
                split, gym_env.unwrapped.model  # type: ignore[attr-defined]
            )
        else:
            library_kwargs.update(kwargs)
            library_kwargs["max_episode_steps"] = self.episode_length
            if (scenario, split) in _OWN_PARTITIONS:
                library_kwargs["agent_factorization"] = _own_factorization(scenario, split)
        self.inner = mamujoco_v1.parallel_env(library_scenario, split, **library_kwargs)

        single = self.inner.single_agent_env
        model = single.unwrapped.model
        self.possible_agents: list[str] = list(self.inner.possible_agents)
        self.agents: list[str] = []
        self.observation_spaces = {a: self.inner.observation_space(a) for a in self.possible_agents}
        self.action_spaces = {a: self.inner.action_space(a) for a in self.possible_agents}
        self.state_space = spaces.Box(
            -np.inf, np.inf, shape=single.observation_space.shape, dtype=np.float64
        )
        self.agent_joints: dict[str, tuple[str, ...]] = {
            agent: tuple(
                _joint_name(model, model.actuator_trnid[node.act_ids, 0]) for node in part
            )
            for agent, part in zip(
                self.possible_agents, self.inner.agent_action_partitions, strict=True
            )
        }
        self.metadata = {
            **type(self).metadata,
            "name": f"mamujoco_{scenario}_{split}_v0",
            "render_fps": single.metadata.get("render_fps"),
        }
        self.num_steps = 0
        self._needs_reset = True

    def _make_many_agent_ant(
        self, split: str, render_mode: str | None, gym_kwargs: dict[str, Any]
    ) -> gymnasium.Env[Any, Any]:
        # The library writes its generated XML into its own package directory and deletes it
        # after loading, which races between processes; use a private temporary file instead.
        agents, segments = (int(x) for x in split.split("x"))
        with tempfile.TemporaryDirectory(prefix="mamujoco_") as tmp:
            path = os.path.join(tmp, f"many_agent_ant_{agents * segments}.xml")
            many_segment_ant.gen_asset(n_segs=agents * segments, asset_path=path)
            return gymnasium.make(
                "Ant-v5",
                xml_file=path,
                max_episode_steps=self.episode_length,
                render_mode=render_mode,
                **gym_kwargs,
            )

    # --- spaces ---------------------------------------------------------------------------
    def observation_space(self, agent: str) -> spaces.Box:
        """The (cached) observation space of ``agent``."""
        try:
            return self.observation_spaces[agent]
        except KeyError:
            raise KeyError(f"unknown agent {agent!r}; expected one of {self.possible_agents}") from None

    def action_space(self, agent: str) -> spaces.Box:
        """The (cached) action space of ``agent``."""
        try:
            return self.action_spaces[agent]
        except KeyError:
            raise KeyError(f"unknown agent {agent!r}; expected one of {self.possible_agents}") from None

    # --- episode --------------------------------------------------------------------------
    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        """Start an episode; ``seed`` seeds MuJoCo's initial-state noise."""
        observations, infos = self.inner.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        self.num_steps = 0
        self._needs_reset = False
        return observations, {a: dict(infos[a]) for a in self.possible_agents}

    def step(self, actions: Mapping[str, Any]) -> tuple[
        dict[str, np.ndarray], dict[str, float], dict[str, bool], dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        """Apply one action per living agent; every agent gets the same team reward."""
        if self._needs_reset:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset()")
        missing = [a for a in self.agents if a not in actions]
        unknown = [a for a in actions if a not in self.action_spaces]
        if missing or unknown:
            raise ValueError(
                f"actions must have one entry per agent {self.agents}: missing {missing}, "
                f"unknown {unknown}"
            )
        for agent in self.agents:
            shape = np.shape(actions[agent])
            expected = self.action_spaces[agent].shape
            if shape != expected:
                raise ValueError(f"action of {agent} has shape {shape}, expected {expected}")

        observations, rewards, terminations, truncations, infos = self.inner.step(actions)
        self.num_steps += 1
        terminated = any(terminations.values())
        truncated = not terminated and (
            any(truncations.values()) or self.num_steps >= self.episode_length
        )
        agents = self.possible_agents
        out = (
            observations,
            {a: float(rewards[a]) for a in agents},
            dict.fromkeys(agents, terminated),
            dict.fromkeys(agents, truncated),
            {a: dict(infos[a]) for a in agents},
        )
        if terminated or truncated:
            self.agents = []
            self._needs_reset = True
        return out

    def state(self) -> np.ndarray:
        """The global state: the single-agent ``-v5`` observation (``state_space``)."""
        return np.asarray(self.inner.state(), dtype=np.float64)

    def render(self) -> np.ndarray | None:
        """An ``(height, width, 3)`` uint8 frame with ``render_mode="rgb_array"``, else ``None``."""
        if self.render_mode is None:
            gymnasium.logger.warn(
                "render() called without a render_mode; build the env with render_mode='rgb_array'"
            )
            return None
        if self._backend is None:
            raise RuntimeError(_no_backend_message())
        try:
            return self.inner.render()  # type: ignore[no-any-return]
        except Exception as exc:  # OpenGL failures come as many exception types
            raise RuntimeError(
                f"MuJoCo rendering with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} failed "
                f"({type(exc).__name__}: {exc}). {_how_to_get_a_backend()}"
            ) from exc

    def close(self) -> None:
        """Release the simulator and any renderer."""
        self.inner.close()

    def __str__(self) -> str:
        return f"MaMuJoCoEnv({self.scenario} {self.split})"
