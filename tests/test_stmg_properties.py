"""Property-based checks of stmg.wrap over random small ParallelEnvs."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stmg
from tests.toy_envs import RecordingEnv

action_space_strategy = st.one_of(
    st.integers(1, 4).map(spaces.Discrete),
    st.integers(1, 3).map(lambda n: spaces.Box(-1.0, 1.0, (n,), np.float32)),
    st.lists(st.integers(1, 3), min_size=1, max_size=3).map(spaces.MultiDiscrete),
)


@st.composite
def games(draw):
    n_agents = draw(st.integers(1, 4))
    action_spaces = [draw(action_space_strategy) for _ in range(n_agents)]
    episode_length = draw(st.integers(1, 6))
    agents = [f"agent_{k}" for k in range(n_agents)]
    deaths = {a: t for a in agents if (t := draw(st.integers(0, episode_length + 1))) in range(1, episode_length + 1)}
    order = draw(st.permutations(agents))
    flatten = draw(st.booleans())
    return action_spaces, deaths, episode_length, list(order), flatten


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(game=games(), seed=st.integers(0, 1000))
def test_invariants_hold_on_random_games(game, seed):
    action_spaces, deaths, episode_length, order, flatten = game
    base = RecordingEnv(action_spaces, deaths=deaths, episode_length=episode_length)
    env = stmg.wrap(base, order=order, flatten=flatten)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for space in action_spaces:
        space.seed(int(rng.integers(1 << 30)))

    given_actions: list[dict] = [{}]
    turns: list[list[str]] = [[]]
    for agent in env.agent_iter(200):
        obs, reward, terminated, truncated, _ = env.last()
        assert env.observation_space(agent).contains(obs), f"{agent}'s observation leaves its space"
        t = env.time_step
        if terminated or truncated:
            # Dead at the step that ended it; it earned that step's reward.
            assert (terminated and deaths.get(agent) == t) or (truncated and t == episode_length)
            assert reward == 10 * base.possible_agents.index(agent) + t
            env.step(None)
            assert agent not in env.agents
            continue
        # The acting agent is the next living agent in the order, and sees exactly its superiors.
        living_order = [a for a in order if a in env.current_order]
        assert living_order == env.current_order
        position = len(turns[-1])
        assert agent == env.current_order[position]
        mask = obs[env.encoder.flat_layout["prior_mask"]] if flatten else obs["prior_mask"]
        superiors = {env.encoder.index[a] for a in env.current_order[:position]}
        assert {int(k) for k in np.flatnonzero(mask)} == superiors
        if t > 0:
            assert reward == 10 * base.possible_agents.index(agent) + t, "last() shows the last step's reward"
        action = env.action_space(agent).sample()
        given_actions[-1][agent] = action
        turns[-1].append(agent)
        env.step(action)
        if env.time_step > t:  # the time step closed
            given_actions.append({})
            turns.append([])
    closed = [g for g in given_actions if g][: len(base.received)]
    assert len(base.received) == len(closed)
    for sent, received in zip(closed, base.received, strict=True):
        assert list(sent) == list(received), "the joint action is sent in turn order"
        for agent in sent:
            np.testing.assert_array_equal(np.asarray(sent[agent]), np.asarray(received[agent]))
    assert env.agents == []


@settings(max_examples=80, deadline=None)
@given(space=action_space_strategy, seed=st.integers(0, 10_000))
def test_action_codec_agrees_with_gymnasium(space, seed):
    codec = stmg.ActionCodec(space)
    space.seed(seed)
    action = space.sample()
    assert codec.contains(action) and space.contains(action)
    encoded = stmg.encode_action(space, action)
    assert encoded.shape == (stmg.action_encoding_size(space),)
    if isinstance(space, spaces.Box):
        np.testing.assert_array_equal(encoded, action.ravel())
        too_big = action.copy()
        too_big[0] = space.high[0] + 1.0
        with_nan = action.copy()
        with_nan[0] = np.nan
        assert not codec.contains(too_big) and not space.contains(too_big)
        assert not codec.contains(with_nan)
        assert not codec.contains(action[:0])
    elif isinstance(space, spaces.Discrete):
        assert encoded.sum() == 1.0 and encoded[action] == 1.0
        assert not codec.contains(int(space.n)) and not codec.contains(-1) and not codec.contains(0.5)
    else:
        assert encoded.sum() == len(space.nvec), "one one-hot per component"
        assert not codec.contains(space.nvec.copy()), "each component must stay below its nvec"
