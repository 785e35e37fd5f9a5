"""PettingZoo's own test suite on stmg.wrap, over our environments and PettingZoo's."""

from __future__ import annotations

import warnings

import pytest
from pettingzoo.test import api_test, seed_test

import envs
import stmg
from tests.toy_envs import RecordingEnv


def _rps():
    from pettingzoo.classic import rps_v2

    return rps_v2.parallel_env()


def _kaz():
    from pettingzoo.butterfly import knights_archers_zombies_v11

    # Many zombies and a slow spawn make agents die within a short run.
    return knights_archers_zombies_v11.parallel_env(spawn_delay=2, max_zombies=20, max_cycles=120, line_death=True)


def _pistonball():
    from pettingzoo.butterfly import pistonball_v6

    return pistonball_v6.parallel_env(n_pistons=4, continuous=True, max_cycles=40)


FACTORIES = {
    "matrix/penalty-v0": lambda: envs.make("matrix/penalty-v0"),
    "matrix/mixing-v0": lambda: envs.make("matrix/mixing-v0"),
    "matrix/climbing-v0": lambda: envs.make("matrix/climbing-v0"),
    "recording-with-death": lambda: RecordingEnv(deaths={"agent_0": 3}, episode_length=6),
    "classic/rps_v2": _rps,
    "butterfly/knights_archers_zombies_v11": _kaz,
    "butterfly/pistonball_v6": _pistonball,
}


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("reverse", [False, True], ids=["default-order", "reversed-order"])
def test_api_and_seed_tests_pass_on_wrapped_envs(name, reverse):
    factory = FACTORIES[name]
    try:
        factory()
    except ImportError as exc:  # butterfly needs pygame / pymunk
        pytest.skip(f"{name} is not installed: {exc}")

    def make():
        base = factory()
        order = list(reversed(base.possible_agents)) if reverse else None
        return stmg.wrap(base, order=order)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api_test(make(), num_cycles=60)
        seed_test(make, num_cycles=20)


def test_flat_and_state_forms_pass_the_api_test():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api_test(stmg.wrap(RecordingEnv(deaths={"agent_1": 2}), flatten=True), num_cycles=20)
        api_test(stmg.wrap(RecordingEnv(deaths={"agent_1": 2}), observation="state"), num_cycles=20)
        seed_test(lambda: stmg.wrap(_pistonball(), flatten=True), num_cycles=10)


def test_kaz_agents_die_mid_episode_and_are_removed_the_pettingzoo_way():
    pytest.importorskip("pygame")
    env = stmg.wrap(_kaz())
    died_mid_episode = []
    for seed in range(5):
        env.reset(seed=seed)
        for agent in env.agent_iter(5000):
            _, _, terminated, truncated, _ = env.last()
            if terminated or truncated:
                if terminated and env.time_step < 120:
                    died_mid_episode.append(agent)
                    assert agent not in env.current_order, "the order skips a dead agent"
                env.step(None)
                assert agent not in env.agents
            else:
                env.step(env.action_space(agent).sample())
        assert env.agents == []
    assert died_mid_episode, "with line_death and many zombies some agent should die before the end"
