"""The N-level policy model, the torch STMG encoding and the hypernetwork regulariser."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest
import torch
from gymnasium import spaces

import stmg
from agents.algorithm import hypernetwork_regulariser
from agents.config import STEPConfig, Variant
from agents.encoding import encode_joint_action, position_of, stmg_inputs
from agents.model import MultiAgentActorCritic
from agents.networks import NLevelPolicy, count_parameters
from agents.spec import JointSpec


def _spec(n_agents: int, n_actions: int = 3, obs_dim: int = 4) -> JointSpec:
    agents = [f"agent_{k}" for k in range(n_agents)]
    enc = stmg.STMGEncoder(agents, {a: spaces.Discrete(n_actions) for a in agents},
                           {a: spaces.Box(-1, 1, (obs_dim,)) for a in agents}, flatten=True)
    return JointSpec.from_encoder(enc)


def test_hypernetwork_output_shapes() -> None:
    for target_hidden in (0, 8):
        net = NLevelPolicy(obs_size=1, n_agents=3, slot_size=2, hidden=16, embedding_size=4,
                           target_hidden=target_hidden, out_size=5, gaussian=True)
        expected = (16 * 5 + 5) if target_hidden == 0 else (16 * 8 + 8 + 8 * 5 + 5)
        assert net.generated().shape == (3, expected + 5), "weights, biases and a log-std per priority"
        out, log_std = net(torch.zeros(7, 10), torch.tensor([0, 1, 2, 0, 1, 2, 0]))
        assert out.shape == (7, 5) and log_std is not None and log_std.shape == (7, 5)


def test_generated_policies_differ_by_priority() -> None:
    torch.manual_seed(0)
    net = NLevelPolicy(obs_size=2, n_agents=2, slot_size=1, hidden=8, embedding_size=4,
                       target_hidden=0, out_size=3, gaussian=False)
    x = torch.randn(1, 6).expand(2, 6)
    out, _ = net(x, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1]), "the same state must map to per-priority policies"


@pytest.mark.parametrize("action_kind", ["discrete", "box"])
def test_actor_parameters_grow_only_by_the_priority_embedding(action_kind: str) -> None:
    cfg = STEPConfig()
    counts = {}
    for n in (2, 3, 9, 17):
        # Same obs and action sizes, so only the number of agents changes the model.
        spec = _spec(n) if action_kind == "discrete" else _box_spec(n)
        counts[n] = count_parameters(MultiAgentActorCritic(spec=spec, config=cfg).actor)
    # E reads superiors as a set (shared weights, fixed agent codes): only e^i grows.
    assert counts[3] - counts[2] == cfg.priority_embedding_size
    assert counts[17] - counts[2] == 15 * cfg.priority_embedding_size


def _box_spec(n_agents: int) -> JointSpec:
    agents = [f"agent_{k}" for k in range(n_agents)]
    enc = stmg.STMGEncoder(agents, {a: spaces.Box(-1, 1, (2,), np.float32) for a in agents},
                           {a: spaces.Box(-1, 1, (3,)) for a in agents}, flatten=True)
    return JointSpec.from_encoder(enc)


def test_state_embedding_reads_who_played_what_and_only_superiors() -> None:
    torch.manual_seed(0)
    net = NLevelPolicy(obs_size=1, n_agents=3, slot_size=2, hidden=8, embedding_size=4,
                       target_hidden=0, out_size=2, gaussian=False)

    def state(a0: list[float], a1: list[float], a2: list[float], mask: list[float]) -> torch.Tensor:
        return torch.tensor([[0.3] + a0 + a1 + a2 + mask])  # [obs, table (3 x 2), mask (3)]

    x, y = [1.0, 0.0], [0.0, 1.0]
    base = net.embed_state(state(x, y, [0.0, 0.0], [1.0, 1.0, 0.0]))
    swapped = net.embed_state(state(y, x, [0.0, 0.0], [1.0, 1.0, 0.0]))
    assert not torch.allclose(base, swapped), "which superior played which action must matter"
    hidden_entry = net.embed_state(state(x, y, [5.0, -5.0], [1.0, 1.0, 0.0]))
    torch.testing.assert_close(base, hidden_entry, rtol=0, atol=0)  # not a superior: ignored
    no_superiors = net.embed_state(state(x, y, [0.0, 0.0], [0.0, 0.0, 0.0]))
    torch.testing.assert_close(no_superiors, net.embed_state(state([0.0] * 2, [0.0] * 2, [0.0] * 2, [0.0] * 3)))


@pytest.mark.parametrize("action_kind", ["discrete", "box"])
def test_chain_and_batched_evaluation_agree(action_kind: str) -> None:
    """The collector's incremental priority chain and the learner's batched evaluation of the
    same joint actions give the same log-probabilities and values (random orders, some agents
    not taking part)."""
    from agents.policy import STEPPolicy

    torch.manual_seed(1)
    spec = _spec(3) if action_kind == "discrete" else _box_spec(3)
    model = MultiAgentActorCritic(spec=spec, config=STEPConfig())
    policy = STEPPolicy(model=model, action_space=spaces.Discrete(2))
    batch = 32
    obs = torch.randn(batch, 3, spec.obs_dim)
    order = torch.stack([torch.randperm(3) for _ in range(batch)])
    n_part = torch.randint(1, 4, (batch,))
    participating = (position_of(order) < n_part.unsqueeze(1)).float()
    with torch.no_grad():
        sampled = policy.chain(obs, participating, order, greedy=False, with_value=True)
        again = policy.evaluate_joint(obs, participating, order, sampled.act)
    torch.testing.assert_close(again.logp, sampled.logp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again.value, sampled.value, rtol=1e-5, atol=1e-5)
    assert bool((sampled.logp[participating == 0] == 0).all())


def test_regulariser_zero_when_unchanged_positive_when_changed() -> None:
    torch.manual_seed(0)
    net = NLevelPolicy(obs_size=2, n_agents=3, slot_size=1, hidden=8, embedding_size=4,
                       target_hidden=0, out_size=3, gaussian=False)
    snapshot = net.generated(torch.arange(2)).detach().clone()
    assert hypernetwork_regulariser(net, snapshot, beta=1.0).item() == 0.0
    with torch.no_grad():
        cast(torch.nn.Linear, net.hypernetwork[0]).weight.add_(0.1)
    reg = hypernetwork_regulariser(net, snapshot, beta=2.0)
    manual = 2.0 / 2 * (net.generated(torch.arange(2)) - snapshot).pow(2).sum()
    assert reg.item() > 0.0
    assert reg.item() == pytest.approx(manual.item())
    assert hypernetwork_regulariser(net, snapshot[:0], beta=1.0).item() == 0.0, "the leader has none"


def test_torch_encoding_equals_stmg_encoder() -> None:
    rng = np.random.default_rng(0)
    agents = ["a", "b", "c"]
    acts = {"a": spaces.Discrete(3), "b": spaces.Discrete(2, start=0), "c": spaces.Discrete(4)}
    obs_spaces = {"a": spaces.Box(-1, 1, (2,)), "b": spaces.Box(-1, 1, (3,)), "c": spaces.Box(-1, 1, (1,))}
    enc = stmg.STMGEncoder(agents, acts, obs_spaces, flatten=True)
    spec = JointSpec.from_encoder(enc)
    order = [2, 0, 1]  # c leads, then a, then b
    joint = [int(rng.integers(acts[a].n)) for a in agents]  # type: ignore[attr-defined]
    base = {a: rng.uniform(-1, 1, obs_spaces[a].shape).astype(np.float32) for a in agents}
    obs = np.zeros((1, 3, spec.obs_dim), np.float32)
    for k, a in enumerate(agents):
        obs[0, k, : base[a].size] = base[a]
    order_t = torch.tensor([order])
    act_enc = encode_joint_action(spec, torch.tensor([joint]))
    for p, k in enumerate(order):
        agent = agents[k]
        prior = {agents[j]: joint[j] for j in order[:p]}
        expected = enc.encode(agent, base[agent], prior, p)
        got = stmg_inputs(spec, obs=torch.as_tensor(obs), act_enc=act_enc, alive=torch.ones(1, 3),
                          pos_of=position_of(order_t), agent=torch.tensor([k]), priority=torch.tensor([p]))
        np.testing.assert_array_equal(got[0].numpy(), expected, err_msg=f"position {p} ({agent})")


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="gamma=1.5"):
        STEPConfig(gamma=1.5)
    with pytest.raises(ValueError, match="epochs=0"):
        STEPConfig(epochs=0)
    assert STEPConfig.from_dict(STEPConfig(variant=Variant.HAPPO).to_dict()).variant is Variant.HAPPO


def test_torch_encoding_equals_stmg_encoder_for_box_actions() -> None:
    agents = ["a", "b"]
    acts = {"a": spaces.Box(-1, 1, (2,), np.float32), "b": spaces.Box(-2, 2, (1,), np.float32)}
    obs_spaces = {a: spaces.Box(-1, 1, (1,)) for a in agents}
    enc = stmg.STMGEncoder(agents, acts, obs_spaces, flatten=True)
    spec = JointSpec.from_encoder(enc)
    joint = torch.tensor([[[0.5, -3.0], [1.5, 0.0]]])  # a's second entry is out of bounds
    env_actions = {"a": np.array([0.5, -1.0], np.float32), "b": np.array([1.5], np.float32)}
    order = torch.tensor([[1, 0]])  # b leads
    got = stmg_inputs(spec, obs=torch.zeros(1, 2, 1), act_enc=encode_joint_action(spec, joint),
                      alive=torch.ones(1, 2), pos_of=position_of(order), agent=torch.tensor([0]),
                      priority=torch.tensor([1]))
    expected = enc.encode("a", np.zeros(1, np.float32), {"b": env_actions["b"]}, 1)
    np.testing.assert_array_equal(got[0].numpy(), expected)


def test_categorical_sampling_matches_probabilities_and_skips_invalid_entries() -> None:
    """The inverse-CDF sampler of MaskedDistribution draws each action with its probability
    and never an entry outside the agent's action set."""
    from agents.networks import MaskedDistribution

    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, -1.0, 5.0]]).expand(20_000, 4)
    valid = torch.tensor([True, True, True, False]).expand(20_000, 4)  # 3 actions, 1 padding
    dist = MaskedDistribution(kind="discrete", out=logits, log_std=None, valid=valid)
    draws = dist.sample()
    assert int(draws.max()) <= 2, "the padded entry must never be drawn"
    freq = torch.bincount(draws, minlength=4).float() / draws.numel()
    expected = torch.softmax(torch.tensor([0.0, 1.0, -1.0]), 0)
    # 20,000 draws: the standard error of each frequency is below 0.0036.
    torch.testing.assert_close(freq[:3], expected, atol=0.015, rtol=0)
    uniform = MaskedDistribution(kind="discrete", out=torch.zeros(9000, 3), log_std=None,
                                 valid=torch.ones(9000, 3, dtype=torch.bool), all_valid=True)
    counts = torch.bincount(uniform.sample(), minlength=3)
    assert counts.numel() == 3 and int(counts.min()) > 2700
