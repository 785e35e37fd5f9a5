"""The update of the learner, term by term, against values computed by hand.

Each test builds a tiny learner, fills a batch, and checks one part of Algorithm 1: the loss
terms of one gradient step, the order of the update groups, that agents outside a group do not
move, HAPPO's correction factor, value normalisation, the bootstrap value, and what each
variant's critic reads.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces
from tianshou.data import Collector, VectorReplayBuffer
from tianshou.env import DummyVectorEnv

from agents.adapter import JointStepEnv
from agents.algorithm import STEPAlgorithm, forward_discounted_returns
from agents.config import STEPConfig, Variant
from agents.networks import NLevelPolicy
from agents.normalization import RunningMeanStd
from agents.policy import batch_tensors
from agents.training import Learner, build_learner, seed_everything, train
from envs.matrix import MatrixGame
from tests.toy_envs import RecordingEnv

ORDER = ["agent_0", "agent_1", "agent_2"]


def _learner(config: STEPConfig, *, deaths: dict[str, int] | None = None, episode_length: int = 5,
             with_state: bool = False, n_agents: int = 3) -> tuple[Learner, JointStepEnv]:
    seed_everything(0)
    spaces_ = [spaces.Discrete(3)] * n_agents
    env = JointStepEnv(env=RecordingEnv(spaces_, deaths=deaths, episode_length=episode_length),
                       info_flags=False, with_state=with_state)
    return build_learner(spec=env.joint_spec, config=config, env=env), env


def _collect(learner: Learner, *, episodes: int = 1, deaths: dict[str, int] | None = None,
             episode_length: int = 5, with_state: bool = False, n_agents: int = 3) -> tuple[Any, Any, Any]:
    spaces_ = [spaces.Discrete(3)] * n_agents
    venv = DummyVectorEnv([lambda: JointStepEnv(
        env=RecordingEnv(spaces_, deaths=deaths, episode_length=episode_length), info_flags=False,
        with_state=with_state)])
    venv.seed([0])
    learner.policy.deterministic_eval = False  # sample, as in training
    collector: Collector[Any] = Collector(learner.policy, venv, VectorReplayBuffer(64, 1))
    collector.reset()
    collector.collect(n_episode=episodes)
    buffer = collector.buffer
    batch, indices = buffer.sample(0)
    return batch, buffer, indices


def _record_losses(algo: STEPAlgorithm) -> list[float]:
    """The loss of every gradient step ``algo`` takes from now on, in order (a spy)."""
    losses: list[float] = []
    original = algo._gradient_step

    def spy(loss: torch.Tensor, frozen: list[torch.nn.Parameter]) -> None:
        losses.append(loss.item())
        original(loss, frozen)

    algo._gradient_step = spy  # type: ignore[method-assign]
    return losses


# --- the loss terms of one gradient step ---------------------------------------------------

def test_loss_terms_of_one_step_by_hand() -> None:
    """Clipped surrogate, clipped value loss, entropy and regulariser on three pairs."""
    cfg = STEPConfig(clip=0.2, value_clip=0.2, advantage_normalization=False, beta=2.0)
    learner, _ = _learner(cfg)
    algo = learner.algorithm
    batch, buffer, indices = _collect(learner)
    algo._preprocess_batch(batch, buffer, indices)
    pb = algo._pairs
    group = torch.nonzero(pb.priority == 1).squeeze(1)[:3]  # three pairs of the follower
    sub = pb.subset(group)
    assert sub.inputs is not None  # vector observations: the inputs are kept with the pairs
    dist, value = learner.model.heads(sub.inputs, agent=sub.agent, priority=1)
    assert value is not None
    logp = dist.log_prob(sub.act).detach()
    # Chosen old quantities: ratios 0.5, 1.0, 1.5; V - V_old = 0.5, 0, 0.1.
    sub.logp_old = logp - torch.log(torch.tensor([0.5, 1.0, 1.5]))
    adv = torch.tensor([1.0, -1.0, 2.0])
    v_new = value.detach()
    sub.v_old = v_new - torch.tensor([0.5, 0.0, 0.1])
    sub.ret = v_new + torch.tensor([1.0, -2.0, 0.3])
    surrogate, vf_loss, entropy, _ = algo._pair_losses(sub, adv, priority=1)
    # min(r A, clip(r, 0.8, 1.2) A): min(0.5, 0.8) = 0.5; min(-1, -1) = -1; min(3, 2.4) = 2.4
    assert surrogate.item() == pytest.approx((0.5 - 1.0 + 2.4) / 3, abs=1e-5)
    # V - R = -1, 2, -0.3. Clipped V_old + clip(V - V_old, +-0.2) - R:
    #   pair 0: V - V_old = 0.5 -> 0.2: error -1 - 0.3 = -1.3 -> max(1, 1.69) = 1.69
    #   pair 1: 0 -> 0: error 2 -> 4
    #   pair 2: -0.1 -> -0.1: error -0.3 -> 0.09
    assert vf_loss.item() == pytest.approx((1.69 + 4.0 + 0.09) / 3, abs=1e-4)
    probs = dist.probs().detach().numpy()
    by_hand = -(probs * np.log(probs)).sum(1).mean()
    assert entropy.item() == pytest.approx(by_hand, abs=1e-6)
    # Without the value clip: plain squared error.
    algo.config = STEPConfig(clip=0.2, value_clip=None, advantage_normalization=False)
    _, vf_plain, _, _ = algo._pair_losses(sub, adv, priority=1)
    assert vf_plain.item() == pytest.approx((1.0 + 4.0 + 0.09) / 3, abs=1e-4)


def test_one_gradient_step_minimises_the_sum_of_the_terms() -> None:
    """The loss handed to the optimiser: -L_clip - eta S + c_v L_V + beta/(i-1) sum ||dH||^2."""
    cfg = STEPConfig(epochs=1, minibatches=1, entropy=0.3, vf_coef=0.7, beta=2.0)
    learner, _ = _learner(cfg)
    algo = learner.algorithm
    batch, buffer, indices = _collect(learner)
    algo._preprocess_batch(batch, buffer, indices)
    pb = algo._pairs
    actor = learner.model.actor
    seen = _record_losses(algo)
    expected: list[float] = []
    for p in range(3):
        group = torch.nonzero(pb.priority == p).squeeze(1)
        sub = pb.subset(group)
        with torch.no_grad():
            surrogate, vf, ent, _ = algo._pair_losses(sub, algo._advantages(sub, None), p)
        # One gradient step per group: the regulariser's snapshot is taken right before it, so
        # the step's regulariser term is exactly 0 (test_regulariser_value_by_hand checks it).
        expected.append(-surrogate.item() - 0.3 * ent.item() + 0.7 * vf.item())
        algo._update_group(pb, group, 1, {"actor": [], "vf": [], "ent": [], "reg": []}, priority=p)
    np.testing.assert_allclose(seen, expected, rtol=1e-5, atol=1e-6)
    assert actor is learner.model.actor


def test_regulariser_value_by_hand() -> None:
    from agents.algorithm import hypernetwork_regulariser
    from agents.networks import NLevelPolicy

    net = NLevelPolicy(obs_size=2, n_agents=3, slot_size=3, hidden=4, embedding_size=2,
                       target_hidden=0, out_size=3, gaussian=False)
    with torch.no_grad():
        current = net.generated(torch.arange(2))
    snapshot = current - 0.1  # every generated number of both superiors moved by 0.1
    reg = hypernetwork_regulariser(net, snapshot, beta=2.0)
    # beta/(i-1) * sum_j ||.||^2 = 2/2 * (2 * n_generated * 0.01)
    assert reg.item() == pytest.approx(2.0 / 2 * 2 * net.n_generated * 0.01, rel=1e-4)


# --- order of groups and agent-by-agent updates ---------------------------------------------

def _recorded_groups(learner: Learner) -> list[dict[str, Any]]:
    algo = learner.algorithm
    calls: list[dict[str, Any]] = []
    original = algo._update_group

    def spy(pb: Any, group: torch.Tensor, epochs: int, log: Any, *, priority: int | None = None,
            factor: torch.Tensor | None = None, actor_waits: bool = False) -> int:
        calls.append({"priority": priority, "agents": sorted(set(pb.agent[group].tolist())),
                      "factor": None if factor is None else factor.clone()})
        return original(pb, group, epochs, log, priority=priority, factor=factor, actor_waits=actor_waits)

    algo._update_group = spy  # type: ignore[method-assign]
    return calls


def test_step_updates_priority_groups_leader_first() -> None:
    learner, _ = _learner(STEPConfig(epochs=1))
    calls = _recorded_groups(learner)
    batch, buffer, indices = _collect(learner)
    learner.algorithm._preprocess_batch(batch, buffer, indices)
    learner.algorithm._update_with_batch(batch, None, 1)
    assert [c["priority"] for c in calls] == [0, 1, 2]
    assert [c["agents"] for c in calls] == [[0], [1], [2]], "fixed order: priority p is agent_p"


def _snapshot(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def _moved(before: list[torch.Tensor], params: list[torch.nn.Parameter]) -> float:
    return sum(float((b - p.detach()).abs().sum()) for b, p in zip(before, params, strict=True))


@pytest.mark.parametrize("variant", [Variant.STEP, Variant.HAPPO])
def test_other_agents_do_not_move_during_a_group_update(variant: Variant) -> None:
    """Adam momentum from earlier updates must not move agents outside the current group."""
    learner, _ = _learner(STEPConfig(variant=variant, epochs=3, minibatches=2))
    algo, model = learner.algorithm, learner.model
    batch, buffer, indices = _collect(learner, episodes=2)
    algo._preprocess_batch(batch, buffer, indices)
    algo._update_with_batch(batch, None, 3)  # momentum for everybody
    batch, buffer, indices = _collect(learner, episodes=2)
    algo._preprocess_batch(batch, buffer, indices)
    pb = algo._pairs
    group = torch.nonzero(pb.agent == 1).squeeze(1)
    others = model.agent_parameters(0) + model.agent_parameters(2)
    if variant is Variant.STEP:
        others += model.priority_parameters(0) + model.priority_parameters(2)
    own = model.agent_parameters(1) + model.priority_parameters(1)
    before_others, before_own = _snapshot(others), _snapshot(own)
    algo._update_group(pb, group, 3, {"actor": [], "vf": [], "ent": [], "reg": []},
                       priority=1 if variant is Variant.STEP else None)
    assert _moved(before_others, others) == 0.0, "parameters of agents 0 and 2 moved in agent 1's update"
    assert _moved(before_own, own) > 0.0, "agent 1's own parameters must be updated"


def test_happo_factor_uses_each_agents_final_policy() -> None:
    learner, _ = _learner(STEPConfig(variant=Variant.HAPPO, epochs=4, minibatches=2))
    calls = _recorded_groups(learner)
    algo, model = learner.algorithm, learner.model
    batch, buffer, indices = _collect(learner, episodes=2)
    algo._preprocess_batch(batch, buffer, indices)
    algo._update_with_batch(batch, None, 4)
    order = [c["agents"][0] for c in calls]
    assert sorted(order) == [0, 1, 2], "every agent once, in a random order"
    pb = algo._pairs
    assert torch.equal(calls[0]["factor"], torch.ones(pb.n_rows)), "the first agent has no factor"
    # The factor of the third agent is the product of the first two agents' ratios, computed
    # with their policies as they are now (after the whole update: nobody moved them since).
    expected = torch.ones(pb.n_rows)
    with torch.no_grad():
        for k in order[:2]:
            group = torch.nonzero(pb.agent == k).squeeze(1)
            sub = pb.subset(group)
            assert sub.inputs is not None
            dist, _ = model.heads(sub.inputs, agent=sub.agent, priority=sub.priority, with_value=False)
            expected[sub.row] *= (dist.log_prob(sub.act) - sub.logp_old).exp()
    torch.testing.assert_close(calls[2]["factor"], expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(expected, torch.ones(pb.n_rows)), "the earlier agents did change"


# --- advantages, bootstrap and value normalisation ------------------------------------------

@pytest.mark.parametrize("gamma", [0.9, 1.0])
def test_lambda_one_returns_equal_monte_carlo_returns(gamma: float) -> None:
    """With lambda = 1 GAE telescopes: the returns are the discounted sums of the rewards,
    whatever the critics say, only if the bootstrap of each step is the next step's value."""
    learner, _ = _learner(STEPConfig(gamma=gamma, gae_lambda=1.0, value_normalization=False),
                          deaths={"agent_0": 4, "agent_1": 4, "agent_2": 4}, episode_length=10)
    batch, buffer, indices = _collect(learner, episodes=2, deaths={a: 4 for a in ORDER}, episode_length=10)
    learner.algorithm._preprocess_batch(batch, buffer, indices)
    rew = np.asarray(batch.rew, dtype=np.float64)  # (8, 3): two episodes of 4 steps
    assert rew.shape == (8, 3)
    expected = np.zeros_like(rew)
    for start in (0, 4):
        running = np.zeros(3)
        for t in range(start + 3, start - 1, -1):
            running = rew[t] + gamma * running
            expected[t] = running
    np.testing.assert_allclose(batch.returns, expected, rtol=1e-5)


def test_forward_discounted_returns_by_hand() -> None:
    rew = np.array([[1.0], [2.0], [3.0], [4.0]])
    prev = np.array([-1, 0, 1, -1])  # a new episode starts at row 3
    np.testing.assert_allclose(forward_discounted_returns(rew, prev, 0.5), [[1.0], [2.5], [4.25], [4.0]])


def test_running_mean_std_is_exact() -> None:
    stats = RunningMeanStd(2)
    data = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0, 4.0])
    agent = torch.tensor([0, 0, 0, 1, 1, 0])
    stats.update(data[:3], agent[:3])
    stats.update(data[3:], agent[3:])
    assert stats.get_buffer("mean").tolist() == pytest.approx([2.5, 15.0])
    assert stats.get_buffer("var").tolist() == pytest.approx([np.var([1, 2, 3, 4]), np.var([10, 20])])
    x = torch.tensor([[4.0, 20.0]])
    torch.testing.assert_close(stats.denormalize(stats.normalize(x)), x)


@pytest.mark.parametrize("normalise", [True, False])
def test_critic_fits_a_return_of_1000(normalise: bool) -> None:
    """A constant reward of 1000 with gamma = 0: every return is 1000. With value normalisation
    the critics fit it within three updates; without it the clipped value loss moves them only
    about clip = 0.2 per update (the failure this option fixes)."""
    payoffs = np.full((2, 3, 3), 1000.0)
    cfg = STEPConfig.matrix_games(value_normalization=normalise)
    learner = train(lambda: MatrixGame(payoffs), config=cfg, total_steps=3 * cfg.steps_per_collect, seed=3)
    env = JointStepEnv(env=MatrixGame(payoffs), with_state=True)
    assert learner.spec.state_dim == 1, "the game's state is in the critics' input"
    obs0, _ = env.reset(seed=0)
    obs, alive, _, order, state = batch_tensors(obs0[None], 1)
    with torch.no_grad():
        res = learner.policy.evaluate_joint(obs, alive, order, torch.tensor([[0, 2]]), state)
        values = learner.model.value_in_return_units(res.value)[0].numpy()
    if normalise:
        np.testing.assert_allclose(values, [1000.0, 1000.0], rtol=0.01)
    else:
        assert np.all(np.abs(values - 1000.0) > 900.0)


# --- what each variant's critic reads -------------------------------------------------------

def test_critics_read_the_state_and_mappo_reads_at_least_what_step_reads() -> None:
    step, env = _learner(STEPConfig(), with_state=True)
    mappo, _ = _learner(STEPConfig(variant=Variant.MAPPO), with_state=True)
    obs_raw, _ = env.reset(seed=0)
    env.step(np.array([0, 1, 2]))
    raw, *_ = env.step(np.array([2, 2, 1]))  # t = 2: state() is [2]
    assert env.joint_spec.state_dim == 1
    obs, alive, _, order, state = batch_tensors(raw[None], 1)
    assert state is not None and state.tolist() == [[2.0]]
    from agents.encoding import encode_joint_action, position_of

    act = torch.tensor([[1, 0, 2]])
    pos_of = position_of(order)
    agent = torch.tensor([1])
    for learner in (step, mappo):
        inputs = learner.model.inputs(obs=obs, act_enc=encode_joint_action(learner.spec, act), alive=alive,
                                      pos_of=pos_of, agent=agent, priority=pos_of[0, agent], state=state)
        assert inputs.critic is not None
        critic = inputs.critic[0].tolist()
        assert critic[-1 if learner is step else -4] == 2.0, "the state is in the critic input"
    # STEP's critic: own obs [1, 2], superiors' table (agent_0 played 1), mask, priority, id, state.
    step_in = step.model.inputs(obs=obs, act_enc=encode_joint_action(step.spec, act), alive=alive,
                                pos_of=pos_of, agent=agent, priority=pos_of[0, agent], state=state).critic
    assert step_in is not None
    assert step_in[0].tolist() == [1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 2]
    # MAPPO's critic: every agent's obs, who is alive, the state, the agent's ID.
    mappo_in = mappo.model.inputs(obs=obs, act_enc=encode_joint_action(mappo.spec, act), alive=alive,
                                  pos_of=pos_of, agent=agent, priority=pos_of[0, agent], state=state).critic
    assert mappo_in is not None
    assert mappo_in[0].tolist() == [0, 2, 1, 2, 2, 2, 1, 1, 1, 2, 0, 1, 0]


def test_ippo_is_independent() -> None:
    learner, env = _learner(STEPConfig(variant=Variant.IPPO, epochs=2))
    model = learner.model
    raw, _ = env.reset(seed=0)
    obs, alive, _, order, _ = batch_tensors(raw[None])
    from agents.encoding import encode_joint_action, position_of

    pos_of = position_of(order)
    for k in range(3):
        inputs = model.inputs(obs=obs, act_enc=encode_joint_action(learner.spec, torch.tensor([[1, 2, 0]])),
                              alive=alive, pos_of=pos_of, agent=torch.tensor([k]), priority=pos_of[0, [k]])
        assert inputs.actor[0].tolist() == [k, 0] and inputs.critic is not None
        assert inputs.critic[0].tolist() == [k, 0], "IPPO reads only its own observation"
    ids = [{id(p) for p in model.agent_parameters(k)} for k in range(3)]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])
    assert sum(len(s) for s in ids) == len(list(model.parameters())), "IPPO shares nothing"
    # Agent 0's loss moves only agent 0's parameters.
    algo = learner.algorithm
    batch, buffer, indices = _collect(learner)
    algo._preprocess_batch(batch, buffer, indices)
    pb = algo._pairs
    sub = pb.subset(torch.nonzero(pb.agent == 0).squeeze(1))
    surrogate, vf, ent, _ = algo._pair_losses(sub, sub.adv)
    (-surrogate + vf).backward()
    for k in (1, 2):
        assert all(p.grad is None for p in model.agent_parameters(k))


# --- options --------------------------------------------------------------------------------

def test_learning_rate_decays_linearly_to_zero() -> None:
    cfg = STEPConfig.matrix_games(lr_decay=True, lr=1e-3, critic_lr=2e-3)
    learner = train(lambda: MatrixGame(np.ones((2, 2, 2))), config=cfg, total_steps=4 * cfg.steps_per_collect, seed=0)
    algo: STEPAlgorithm = learner.algorithm
    # Four updates; the last one ran at fraction 1 - 3/4.
    assert [g["lr"] for g in algo._adam.param_groups] == pytest.approx([0.25e-3, 0.5e-3])
    assert algo.steps_done() == 4 * cfg.steps_per_collect
    with pytest.raises(RuntimeError, match="set_training_horizon"):
        learner2, _ = _learner(STEPConfig(lr_decay=True))
        learner2.algorithm.lr_fraction(0)


def test_observation_statistics_change_only_when_learning() -> None:
    cfg = STEPConfig(obs_normalization=True, epochs=1)
    learner, env = _learner(cfg, with_state=True)
    norm = learner.model.obs_norm
    assert norm is not None and learner.model.state_norm is not None
    batch, buffer, indices = _collect(learner, with_state=True)  # acting: no change
    assert float(norm.get_buffer("count").sum()) == 0.0
    learner.algorithm._preprocess_batch(batch, buffer, indices)
    assert float(norm.get_buffer("count").sum()) == 0.0, "statistics change after the update, not before"
    learner.algorithm._update_with_batch(batch, None, 1)
    # agent k's observations over the 5 steps: [k, t] for t = 0..4.
    assert norm.get_buffer("mean")[1].tolist() == pytest.approx([1.0, 2.0])
    assert norm.get_buffer("var")[1].tolist() == pytest.approx([0.0, 2.0])
    assert learner.model.state_norm.get_buffer("mean")[0].tolist() == pytest.approx([2.0])
    state_dict = learner.algorithm.state_dict()
    assert any(key.endswith("obs_norm.mean") for key in state_dict), "saved with the learner"


def test_reward_scaling_divides_by_the_std_of_discounted_returns() -> None:
    cfg = STEPConfig(reward_scaling=True, gamma=0.5, gae_lambda=0.0, value_normalization=False)
    learner, _ = _learner(cfg, n_agents=1, episode_length=3)
    batch, buffer, indices = _collect(learner, n_agents=1, episode_length=3)
    rewards = np.asarray(batch.rew, np.float64).reshape(-1)  # 1, 2, 3 (agent 0: 10*0 + t)
    assert rewards.tolist() == [1.0, 2.0, 3.0]
    learner.algorithm._preprocess_batch(batch, buffer, indices)
    discounted = np.array([1.0, 2.5, 4.25])
    std = discounted.std()
    # gae_lambda = 0: the advantage is the one-step TD error of the scaled reward.
    pb = learner.algorithm._pairs
    values = batch.returns.reshape(-1) - batch.adv.reshape(-1)
    td_reward = batch.adv.reshape(-1) + values  # r/std + gamma V' (V' = the next value)
    assert pb.row.numel() == 3
    last = td_reward[-1]  # truncated at the end: bootstrap from the last observation's value
    assert td_reward[0] - 0.5 * values[1] == pytest.approx(1.0 / std, rel=1e-4)
    assert td_reward[1] - 0.5 * values[2] == pytest.approx(2.0 / std, rel=1e-4)
    assert math.isfinite(float(last))


def test_superiors_learn_on_a_slower_timescale_when_asked() -> None:
    learner, _ = _learner(STEPConfig(lr=1e-3, critic_lr=2e-3, superior_lr_scale=0.5, epochs=1))
    algo = learner.algorithm
    seen: list[tuple[int | None, float, float]] = []
    original = algo._update_group

    def spy(pb: Any, group: torch.Tensor, epochs: int, log: Any, *, priority: int | None = None,
            factor: torch.Tensor | None = None, actor_waits: bool = False) -> int:
        actor_lr, critic_lr = (g["lr"] for g in algo._adam.param_groups)
        seen.append((priority, actor_lr, critic_lr))
        return original(pb, group, epochs, log, priority=priority, factor=factor, actor_waits=actor_waits)

    algo._update_group = spy  # type: ignore[method-assign]
    batch, buffer, indices = _collect(learner)
    algo._preprocess_batch(batch, buffer, indices)
    algo._update_with_batch(batch, None, 1)
    # Three positions: the leader at 0.25 lr, the middle at 0.5, the last follower at lr; the
    # critics keep their own rate.
    assert seen == [(0, pytest.approx(0.25e-3), pytest.approx(2e-3)), (1, pytest.approx(0.5e-3), pytest.approx(2e-3)),
                    (2, pytest.approx(1e-3), pytest.approx(2e-3))]


def test_bottom_up_start_holds_each_position_until_its_share_of_the_run() -> None:
    # Three positions, bottom_up = 0.6: the leader starts after 0.6 of the run, the middle
    # position after 0.3, the last follower at once.
    learner, _ = _learner(STEPConfig(lr=1e-2, bottom_up=0.6, epochs=2))
    algo = learner.algorithm
    batch, buffer, indices = _collect(learner)
    rows = len(indices)
    actor = list(algo._adam.param_groups[0]["params"])
    critic = list(algo._adam.param_groups[1]["params"])
    seen: list[tuple[int | None, bool, float, float]] = []
    original = algo._update_group

    def spy(pb: Any, group: torch.Tensor, epochs: int, log: Any, *, priority: int | None = None,
            factor: torch.Tensor | None = None, actor_waits: bool = False) -> int:
        a, c = _snapshot(actor), _snapshot(critic)
        steps = original(pb, group, epochs, log, priority=priority, factor=factor, actor_waits=actor_waits)
        seen.append((priority, actor_waits, _moved(a, actor), _moved(c, critic)))
        return steps

    algo._update_group = spy  # type: ignore[method-assign]
    for done_before, waiting in ((0.0, [True, True, False]), (0.35, [True, False, False]),
                                 (0.6, [False, False, False])):
        # The batch counts as learned from before the update reads the progress.
        algo.set_training_horizon(round(rows / 0.05))
        algo.get_buffer("env_steps_done").fill_(round(done_before * rows / 0.05))
        algo._preprocess_batch(batch, buffer, indices)
        seen.clear()
        algo._update_with_batch(batch, None, 2)
        assert [s[0] for s in seen] == [0, 1, 2]
        assert [s[1] for s in seen] == waiting
        for _, waits, actor_moved, critic_moved in seen:
            assert critic_moved > 0  # every position's critic learns from the start
            assert (actor_moved == 0.0) == waits  # a waiting position moves no actor parameter
    with pytest.raises(ValueError, match="bottom_up=1.0"):
        STEPConfig(bottom_up=1.0)


def _box_learner_and_batch(config: STEPConfig) -> tuple[Learner, Any]:
    """A three-agent game with Box(-1, 1, (2,)) actions, one collected episode, preprocessed."""
    seed_everything(0)
    box = [spaces.Box(-1.0, 1.0, (2,), np.float32)] * 3

    def make() -> JointStepEnv:
        return JointStepEnv(env=RecordingEnv(box, episode_length=6), info_flags=False)

    env = make()
    learner = build_learner(spec=env.joint_spec, config=config, env=env)
    venv = DummyVectorEnv([make])
    venv.seed([0])
    learner.policy.deterministic_eval = False
    collector: Collector[Any] = Collector(learner.policy, venv, VectorReplayBuffer(64, 1))
    collector.reset()
    collector.collect(n_episode=1)
    batch, indices = collector.buffer.sample(0)
    learner.algorithm._preprocess_batch(batch, collector.buffer, indices)
    return learner, learner.algorithm._pairs


def _log_stds(learner: Learner) -> torch.Tensor:
    """(3, 2) the log-std each priority's Gaussian has now (the same for every state)."""
    actor = learner.model.actor
    assert isinstance(actor, NLevelPolicy)
    with torch.no_grad():
        s = torch.zeros(1, learner.config.hidden_size)
        log_stds = []
        for p in range(3):
            log_std = actor.target(s, p)[1]
            assert log_std is not None, "a Gaussian policy"
            log_stds.append(log_std)
        return torch.cat(log_stds)


@pytest.mark.parametrize("source", ["generated", "priority"])
def test_where_the_log_std_lives_decides_which_updates_move_it(source: str) -> None:
    """Generated by the shared hypernetwork, every priority's log-std moves in every group's
    update; as a free parameter per priority it moves only in its own priority's update."""
    cfg = STEPConfig(log_std_source=source, log_std_init=-0.7, epochs=2, entropy=0.5, max_grad_norm=None)
    learner, pb = _box_learner_and_batch(cfg)
    actor = learner.model.actor
    np.testing.assert_allclose(_log_stds(learner).numpy(), -0.7, atol=0.05 if source == "generated" else 0)
    if source == "priority":
        assert actor.priority_log_std is not None
        assert actor.n_generated == cfg.hidden_size * 2 + 2, "the hypernetwork makes weights and bias only"
        assert [len(learner.model.priority_parameters(p)) for p in range(3)] == [2, 2, 2]
    else:
        assert actor.priority_log_std is None and actor.n_generated == cfg.hidden_size * 2 + 2 + 2
    for p in range(3):
        before = _log_stds(learner)
        group = torch.nonzero(pb.priority == p).squeeze(1)
        learner.algorithm._update_group(pb, group, 2, {"actor": [], "vf": [], "ent": [], "reg": []}, priority=p)
        moved = (_log_stds(learner) - before).abs().sum(1)
        assert moved[p] > 1e-4, f"priority {p}'s own log-std did not move in its update"
        others = [q for q in range(3) if q != p]
        if source == "priority":
            assert moved[others].max().item() == 0.0, f"other priorities' log-stds moved in {p}'s update"
        else:
            assert moved[others].min().item() > 1e-6, "the shared hypernetwork moves every log-std"


def test_log_std_source_is_checked() -> None:
    with pytest.raises(ValueError, match="log_std_source='free'; expected 'generated' or 'priority'"):
        STEPConfig(log_std_source="free")

# --- the policy anchor ----------------------------------------------------------------------

def test_kl_divergence_by_hand() -> None:
    from agents.networks import MaskedDistribution

    # Categorical, the third entry masked out: p = (1/2, 1/2), q = (1/4, 3/4).
    valid = torch.tensor([True, True, False])
    p = MaskedDistribution(kind="discrete", out=torch.log(torch.tensor([[0.5, 0.5, 0.3]])), log_std=None,
                           valid=valid)
    q = MaskedDistribution(kind="discrete", out=torch.log(torch.tensor([[0.25, 0.75, 0.9]])), log_std=None,
                           valid=valid)
    by_hand = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert p.kl_divergence(q).item() == pytest.approx(by_hand, rel=1e-5)
    assert p.kl_divergence(p).item() == pytest.approx(0.0, abs=1e-7)
    # Gaussian, the second dimension padded: KL(N(0, 1) || N(1, 2^2)) = log 2 + (1 + 1) / 8 - 1/2.
    g_valid = torch.tensor([1.0, 0.0])
    g_p = MaskedDistribution(kind="box", out=torch.zeros(1, 2), log_std=torch.zeros(1, 2), valid=g_valid)
    g_q = MaskedDistribution(kind="box", out=torch.tensor([[1.0, 5.0]]),
                             log_std=torch.tensor([[math.log(2.0), 1.0]]), valid=g_valid)
    assert g_p.kl_divergence(g_q).item() == pytest.approx(math.log(2.0) + 2.0 / 8.0 - 0.5, rel=1e-5)
    with pytest.raises(ValueError, match="Gaussian"):
        p.kl_divergence(g_q)


def test_take_rows_of_a_distribution() -> None:
    from agents.networks import MaskedDistribution

    out = torch.randn(4, 3)
    valid = torch.tensor([[True, True, False]] * 4)
    dist = MaskedDistribution(kind="discrete", out=out, log_std=None, valid=valid)
    idx = torch.tensor([2, 0])
    sub = MaskedDistribution(kind="discrete", out=out[idx], log_std=None, valid=valid[idx])
    assert torch.allclose(dist.take(idx).probs(), sub.probs())
    log_std = torch.randn(4, 3)
    gauss = MaskedDistribution(kind="box", out=out, log_std=log_std, valid=valid.float())
    rows = gauss.take(idx)
    assert rows.normal is not None and gauss.normal is not None
    # The spread as the whole distribution has it (log-stds clamped to [log_std_min, 2]).
    assert torch.equal(rows.normal.scale, gauss.normal.scale[idx])
    assert torch.equal(rows.normal.scale, log_std[idx].clamp(-5.0, 2.0).exp())
    assert torch.equal(rows.normal.loc, out[idx]) and torch.equal(rows.valid, valid.float()[idx])


def test_policy_anchor_is_zero_at_the_start_of_an_update_and_holds_the_others() -> None:
    """KL(pi_before || pi) and its gradient vanish where the update starts, so the first
    gradient step is the one without the anchor; over several steps the other positions'
    policies move less with it than without."""

    def update_follower(anchor: float, epochs: int) -> tuple[list[float], float]:
        learner, _ = _learner(STEPConfig(epochs=epochs, policy_anchor=anchor))
        algo, model = learner.algorithm, learner.model
        batch, buffer, indices = _collect(learner, episodes=2)
        algo._preprocess_batch(batch, buffer, indices)
        pb = algo._pairs
        others = torch.nonzero(pb.priority != 1).squeeze(1)
        sub = pb.subset(others)
        assert sub.inputs is not None
        with torch.no_grad():
            before, _ = model.heads(sub.inputs, agent=sub.agent, priority=sub.priority, with_value=False)
        losses = _record_losses(algo)
        group = torch.nonzero(pb.priority == 1).squeeze(1)
        algo._update_group(pb, group, epochs, {"actor": [], "vf": [], "ent": [], "reg": []}, priority=1)
        with torch.no_grad():
            after, _ = model.heads(sub.inputs, agent=sub.agent, priority=sub.priority, with_value=False)
        return losses, before.kl_divergence(after).mean().item()

    plain_losses, plain_moved = update_follower(0.0, epochs=1)
    anchored_losses, anchored_moved = update_follower(100.0, epochs=1)
    assert anchored_losses == pytest.approx(plain_losses, rel=1e-6)
    assert anchored_moved == pytest.approx(plain_moved, rel=1e-4), "one step: the same step"
    _, plain_moved = update_follower(0.0, epochs=10)
    _, anchored_moved = update_follower(100.0, epochs=10)
    assert plain_moved > 0.0
    assert anchored_moved < 0.5 * plain_moved


def test_policy_anchor_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="policy_anchor"):
        STEPConfig(policy_anchor=-1.0)
