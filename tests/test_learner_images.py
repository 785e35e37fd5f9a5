"""Image observations: detection, the convolutional encoder, training, memory and checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch.utils._python_dispatch import TorchDispatchMode

from agents.adapter import JointStepEnv
from agents.checkpoint import CheckpointMismatchError, load_checkpoint, load_into, save_checkpoint
from agents.config import STEPConfig, Variant
from agents.execution import play_greedy
from agents.maddpg import MADDPGConfig, build_maddpg
from agents.model import MultiAgentActorCritic
from agents.networks import ImageEncoder, count_parameters
from agents.spec import UnsupportedSpaceError
from agents.training import build_learner, train
from tests.image_envs import BrightHalfEnv


def _spec(n_agents: int = 2, **kwargs: Any) -> Any:
    return JointStepEnv(env=BrightHalfEnv(n_agents, **kwargs)).joint_spec


def test_image_games_are_detected_channels_last_and_first() -> None:
    last, first = _spec(), _spec(channels_first=True)
    assert (last.image_shape, last.image_channels_first) == ((12, 12, 3), False)
    assert (first.image_shape, first.image_channels_first) == ((12, 12, 3), True)
    assert (last.image_low, last.image_high) == (0.0, 255.0)
    assert last.signature()["image_shape"] == [12, 12, 3]
    assert last.signature() != first.signature(), "a checkpoint of one layout does not load into the other"
    assert _spec(size=8).signature()["image_shape"] == [8, 8, 3]


def test_encoder_scales_pixels_to_the_unit_interval_by_the_bounds() -> None:
    uint8 = ImageEncoder(shape=(4, 5, 3), channels_first=False, low=0.0, high=255.0, out_size=8)
    white = torch.full((2, 4 * 5 * 3), 255.0)
    torch.testing.assert_close(uint8.scaled(white), torch.ones(2, 3, 4, 5))
    signed = ImageEncoder(shape=(1, 3, 1), channels_first=False, low=-1.0, high=1.0, out_size=8)
    torch.testing.assert_close(signed.scaled(torch.tensor([[-1.0, 0.0, 1.0]])),
                               torch.tensor([[[[0.0, 0.5, 1.0]]]]))


def test_encoder_reads_channels_first_and_last_images_alike() -> None:
    hwc = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    chw = hwc.transpose(2, 0, 1)
    last = ImageEncoder(shape=(4, 5, 3), channels_first=False, low=0.0, high=60.0, out_size=8)
    first = ImageEncoder(shape=(4, 5, 3), channels_first=True, low=0.0, high=60.0, out_size=8)
    expected = torch.as_tensor(chw / 60.0).unsqueeze(0)  # (1, C, H, W)
    torch.testing.assert_close(last.scaled(torch.as_tensor(hwc.reshape(1, -1))), expected)
    torch.testing.assert_close(first.scaled(torch.as_tensor(chw.reshape(1, -1))), expected)


def test_encoder_depth_and_output_shapes() -> None:
    small = ImageEncoder(shape=(12, 12, 3), channels_first=False, low=0.0, high=255.0, out_size=64)
    assert small.conv_out_shape == (16, 6, 6)  # one stride-2 layer brings 12 to 6 <= 8
    pistonball = ImageEncoder(shape=(457, 120, 3), channels_first=False, low=0.0, high=255.0, out_size=64)
    assert pistonball.conv_out_shape == (32, 29, 8)  # 120 -> 60 -> 30 -> 15 -> 8
    features = small(torch.rand(5, 12 * 12 * 3) * 255)
    assert features.shape == (5, 64) and bool((features >= 0).all())


def test_model_encodes_the_chosen_cells_and_leaves_the_others_zero() -> None:
    model = MultiAgentActorCritic(spec=_spec(3), config=STEPConfig())
    assert model.actor_encoder is not None and model.critic_encoder is not None
    obs = torch.rand(2, 3, 432) * 255
    cells = torch.tensor([[True, False, True], [False, False, True]])
    features = model.encode(obs, cells)  # (2, 3, hidden)
    assert features.shape == (2, 3, 64)
    assert not features[~cells].any()
    torch.testing.assert_close(features[0, 2], model.actor_encoder(obs[0, 2:3])[0])
    critic = model.encode(obs, cells, critic=True)
    torch.testing.assert_close(critic[1, 2], model.critic_encoder(obs[1, 2:3])[0])
    vector = MultiAgentActorCritic(spec=JointStepEnv(env=_vector_env()).joint_spec, config=STEPConfig())
    x = torch.rand(2, 2, 2)
    assert vector.encode(x) is x and vector.actor_encoder is None


def _vector_env() -> Any:
    from tests.toy_envs import RecordingEnv

    return RecordingEnv()


def test_mappo_critic_reads_every_living_agents_image_features() -> None:
    model = MultiAgentActorCritic(spec=_spec(3), config=STEPConfig(variant=Variant.MAPPO))
    assert model.critic_encoder is not None
    obs = torch.rand(2, 3, 432) * 255
    alive = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    pos_of = torch.tensor([[0, 1, 2], [0, 1, 2]])
    inputs = model.pair_inputs(obs=obs, act_enc=torch.zeros(2, 3, 2), alive=alive, pos_of=pos_of,
                               row=torch.tensor([0, 1]), agent=torch.tensor([1, 2]),
                               priority=torch.tensor([1, 2]))
    assert inputs.critic is not None
    critic = inputs.critic[0, : 3 * 64].reshape(3, 64)  # pair (time step 0, agent 1)
    torch.testing.assert_close(critic[:2], model.critic_encoder(obs[0, :2]))
    assert not critic[2].any(), "the dead agent's features are 0, as its observation is in vector games"
    torch.testing.assert_close(inputs.critic[0, 3 * 64:], torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0]))
    assert model.actor_encoder is not None
    torch.testing.assert_close(inputs.actor[1, :64], model.actor_encoder(obs[1, 2:3])[0])


def test_step_actor_grows_only_by_the_priority_embedding_with_images() -> None:
    cfg = STEPConfig()
    counts = {}
    for n in (2, 3, 9):
        model = MultiAgentActorCritic(spec=_spec(n), config=cfg)
        assert model.actor_encoder is not None
        counts[n] = count_parameters(model.actor) + count_parameters(model.actor_encoder)
    assert counts[3] - counts[2] == cfg.priority_embedding_size
    assert counts[9] - counts[2] == 7 * cfg.priority_embedding_size


@pytest.mark.parametrize("variant", list(Variant))
def test_variants_learn_to_name_the_bright_half(variant: Variant) -> None:
    cfg = STEPConfig(variant=variant, n_envs=2, steps_per_collect=32, epochs=4, lr=1e-3)
    learner = train(lambda: BrightHalfEnv(2), config=cfg, total_steps=256, seed=0)
    model = learner.model
    assert model.actor_encoder is not None and model.critic_encoder is not None
    fresh = MultiAgentActorCritic(spec=learner.spec, config=cfg)
    assert not torch.equal(model.actor_encoder.linear.weight, fresh.actor_encoder.linear.weight)  # type: ignore[union-attr]
    env = BrightHalfEnv(2, episode_length=30)
    play_greedy(model, env, mode="communicated", max_steps=30, seed=1)
    # A policy blind to the image would score 0.5; untrained (lr 1e-9) it scores 0.78.
    assert len(env.rewards_given) == 60 and np.mean(env.rewards_given) >= 0.95


def _largest_allocation(n_agents: int, variant: Variant) -> int:
    """Bytes of the largest storage any torch op creates in one collect and update."""

    class Largest(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.largest = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.largest = max(self.largest, t.untyped_storage().nbytes())
            return out

    cfg = STEPConfig(variant=variant, n_envs=1, steps_per_collect=32, epochs=1, minibatches=1)
    with Largest() as mode:
        train(lambda: BrightHalfEnv(n_agents, episode_length=4), config=cfg, total_steps=32, seed=0)
    return mode.largest


@pytest.mark.parametrize("variant", [Variant.STEP, Variant.MAPPO])
def test_memory_grows_linearly_with_the_agents_not_with_pairs_times_images(variant: Variant) -> None:
    small, large = _largest_allocation(2, variant), _largest_allocation(8, variant)
    image_bytes = 12 * 12 * 3 * 4
    # Gathering every agent's image per (time step, agent) pair: 32 x 8 x 8 images at once.
    assert large < 32 * 8 * 8 * image_bytes / 4
    assert large / small <= 5, f"2 agents: {small} bytes, 8 agents: {large} bytes (x16 = pairs x agents)"


def test_image_checkpoints_round_trip_and_other_shapes_are_refused(tmp_path: Path) -> None:
    learner = train(lambda: BrightHalfEnv(2), config=STEPConfig(n_envs=1, steps_per_collect=8, epochs=1),
                    total_steps=8, seed=0)
    save_checkpoint(learner, tmp_path / "image.pt")
    loaded = load_checkpoint(tmp_path / "image.pt", spec=learner.spec)
    for (name, saved), restored in zip(learner.model.state_dict().items(), loaded.model.state_dict().values(),
                                       strict=True):
        assert torch.equal(saved, restored), name
    other = build_learner(spec=_spec(size=8), config=STEPConfig())
    with pytest.raises(CheckpointMismatchError, match=r"image_shape: checkpoint has \[12, 12, 3\].*\[8, 8, 3\]"):
        load_into(other, tmp_path / "image.pt")


def test_maddpg_refuses_images() -> None:
    env = JointStepEnv(env=BrightHalfEnv(2))
    with pytest.raises(UnsupportedSpaceError, match=r"MADDPG reads vector observations only.*\(12, 12, 3\)"):
        build_maddpg(env=env, config=MADDPGConfig())


def test_image_space_of_the_test_env_is_what_it_yields() -> None:
    env = BrightHalfEnv(2)
    obs, _ = env.reset(seed=0)
    space = env.observation_space("agent_0")
    assert isinstance(space, spaces.Box) and all(space.contains(o) for o in obs.values())


class ScreenStateEnv(BrightHalfEnv):
    """BrightHalfEnv with a global ``state()`` that is an image too (as pistonball's screen)."""

    def __init__(self) -> None:
        super().__init__(2)
        self.state_space = spaces.Box(0, 255, (16, 16, 3), np.uint8)

    def state(self) -> np.ndarray:
        return np.zeros((16, 16, 3), np.uint8)


def test_an_image_state_is_left_out_of_the_critics() -> None:
    from agents.training import critics_read_state

    assert not critics_read_state(STEPConfig(), ScreenStateEnv())
    with pytest.raises(ValueError, match=r"critic_state='always'.*image of shape \(16, 16, 3\).*'auto'"):
        critics_read_state(STEPConfig(critic_state="always"), ScreenStateEnv())
    learner = train(ScreenStateEnv, config=STEPConfig(n_envs=1, steps_per_collect=8, epochs=1), total_steps=8, seed=0)
    assert learner.spec.state_dim == 0


_ALLOCATE_TWICE = """
import resource, sys
import torch
if sys.argv[1] == "raised":
    from agents.allocator import reuse_freed_memory
    assert reuse_freed_memory()
faults = []
for _ in range(6):  # 64 MB blocks, above glibc's largest dynamic mmap threshold
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(16 << 20)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[3:]))  # the last three (the heap settles within the first three)
"""


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="glibc's allocator on Linux")
def test_image_learners_reuse_large_freed_blocks() -> None:
    """Building a learner for an image game raises glibc's mmap threshold: a 64 MB block,
    allocated and freed again and again, is soon reused without page faults (by default each
    one is mapped anew and faults in all its 16,384 pages)."""
    import subprocess
    import sys

    from agents import allocator

    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _ALLOCATE_TWICE, mode], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[1])
        return int(out.stdout.strip())

    assert faults("default") > 40_000  # every allocation mapped and faulted in anew
    assert faults("raised") < 1_000
    env = JointStepEnv(env=BrightHalfEnv(2))
    build_learner(spec=env.joint_spec, config=STEPConfig(), env=env)
    assert allocator._applied  # the image game set it in this process too
