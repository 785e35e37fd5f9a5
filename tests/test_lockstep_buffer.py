"""LockstepVectorReplayBuffer against Tianshou's VectorReplayBuffer: the same episodes in
both give the same returns of ``add``, the same stored data and the same bookkeeping."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from tianshou.data import Batch, VectorReplayBuffer

from agents.lockstep_buffer import LockstepVectorReplayBuffer


def _random_batch(rng: np.random.Generator, rows: int, reward_shape: tuple[int, ...]) -> Batch:
    obs = rng.normal(size=(rows, 3)).astype(np.float32)
    terminated = rng.random(rows) < 0.15
    truncated = ~terminated & (rng.random(rows) < 0.05)
    return Batch(obs=obs, act=rng.integers(0, 4, size=(rows, 2)), rew=rng.normal(size=(rows, *reward_shape)),
                 terminated=terminated, truncated=truncated, obs_next=obs + 1.0, info=Batch())


def _assert_same_state(fast: LockstepVectorReplayBuffer, ref: VectorReplayBuffer) -> None:
    assert len(fast) == len(ref)
    np.testing.assert_array_equal(fast._lengths, ref._lengths)
    np.testing.assert_array_equal(fast.last_index, ref.last_index)
    all_fast, all_ref = fast.sample_indices(0), ref.sample_indices(0)
    np.testing.assert_array_equal(all_fast, all_ref)
    np.testing.assert_array_equal(fast.unfinished_index(), ref.unfinished_index())
    np.testing.assert_array_equal(fast.prev(all_ref), ref.prev(all_ref))
    np.testing.assert_array_equal(fast.next(all_ref), ref.next(all_ref))
    for key in ("obs", "act", "rew", "done", "terminated", "truncated", "obs_next"):
        np.testing.assert_array_equal(fast[all_ref][key], ref[all_ref][key])
    for mine, theirs in zip(fast.buffers, ref.buffers, strict=True):
        assert (mine._insertion_idx, mine._size, mine._ep_len, mine._ep_start_idx) == \
            (theirs._insertion_idx, theirs._size, theirs._ep_len, theirs._ep_start_idx)
        np.testing.assert_allclose(mine._ep_return, theirs._ep_return, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(mine.last_index, theirs.last_index)


@pytest.mark.parametrize("reward_shape", [(), (3,)], ids=["scalar-reward", "reward-per-agent"])
def test_full_batches_match_tianshou_through_wraparound(reward_shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    envs, per_env = 5, 7  # 40 steps: every sub-buffer wraps around several times
    fast, ref = LockstepVectorReplayBuffer(envs * per_env, envs), VectorReplayBuffer(envs * per_env, envs)
    for step in range(40):
        batch = _random_batch(rng, envs, reward_shape)
        ids = None if step % 2 else np.arange(envs)
        got, want = fast.add(batch, ids), ref.add(batch, ids)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(np.asarray(g, float), np.asarray(w, float), rtol=0, atol=1e-12)
            assert np.asarray(g).shape == np.asarray(w).shape
        if step % 9 == 8:  # reading the sub-buffers in between must not change anything
            _assert_same_state(fast, ref)
    _assert_same_state(fast, ref)


def test_partial_adds_reset_and_saving_stay_consistent(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    envs = 4
    fast, ref = LockstepVectorReplayBuffer(40, envs), VectorReplayBuffer(40, envs)
    for step in range(30):
        if step % 7 == 3:  # a partial add goes through Tianshou's own path
            batch, ids = _random_batch(rng, 2, ()), [1, 3]
        else:
            batch, ids = _random_batch(rng, envs, ()), None
        for g, w in zip(fast.add(batch, ids), ref.add(batch, ids), strict=True):
            np.testing.assert_allclose(np.asarray(g, float), np.asarray(w, float), rtol=0, atol=1e-12)
        if step == 15:
            fast, ref = pickle.loads(pickle.dumps(fast)), pickle.loads(pickle.dumps(ref))
        if step == 18:  # Tianshou's HDF5 files too
            fast.save_hdf5(str(tmp_path / "fast.h5"))
            ref.save_hdf5(str(tmp_path / "ref.h5"))
            fast = LockstepVectorReplayBuffer.load_hdf5(str(tmp_path / "fast.h5"))
            ref = VectorReplayBuffer.load_hdf5(str(tmp_path / "ref.h5"))
            _assert_same_state(fast, ref)
        if step == 20:
            fast.reset()
            ref.reset()
    _assert_same_state(fast, ref)


def test_rejects_a_bad_buffer_count() -> None:
    with pytest.raises(ValueError, match="buffer_num=0"):
        LockstepVectorReplayBuffer(10, 0)
