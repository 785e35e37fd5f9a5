"""The training scripts lose nothing: interrupted runs resume to the uninterrupted result (issue 11).

The end-to-end tests interrupt ``examples/train_matrix.py`` running a pool of workers, with SIGINT
to the whole process group (as Ctrl-C does) and with SIGTERM to the main process alone, once at
least one trial has finished; they check that the workers are gone, run the same command again
and compare the summary with an uninterrupted run's. Signals to trials running in the main
process are tested directly on :func:`runner.journal.run_trials`. Wall-clock fields (``seconds``, ``minutes``) are the only
ones allowed to differ. They run with ``NUMBA_DISABLE_JIT=1``: Tianshou's replay buffer otherwise
compiles for ~6 s in every fresh process, and the trials' results do not depend on it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from runner.journal import ResumeMismatchError, TrialJournal, run_trials

ROOT = Path(__file__).resolve().parents[1]
TRAIN_MATRIX = ROOT / "examples/train_matrix.py"
# Four trials of ~0.5 s each after a ~1.5 s warm-up: the signal lands between trials.
RUN = ["--algo", "step", "--game", "penalty", "--steps", "4000", "--trials", "4"]


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look their module up there
    spec.loader.exec_module(module)
    return module


def without_timings(data: Any) -> Any:
    """``data`` without its wall-clock fields, which no two runs share."""
    if isinstance(data, dict):
        return {k: without_timings(v) for k, v in data.items() if k not in ("seconds", "minutes")}
    if isinstance(data, list):
        return [without_timings(v) for v in data]
    return data


def start(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_DISABLE_JIT": "1"}
    return subprocess.Popen([sys.executable, str(TRAIN_MATRIX), *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process is gone
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def journal_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("reference") / "summary.json"
    proc = start([*RUN, "--workers", "1", "--out", str(out)])
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    return without_timings(json.loads(out.read_text()))  # type: ignore[no-any-return]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the workers")
@pytest.mark.parametrize(
    ("signum", "workers", "whole_group"),
    [
        (signal.SIGINT, 2, True),  # Ctrl-C in a terminal: every process of the group gets it
        (signal.SIGTERM, 2, False),  # kill PID: only the main process gets it
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_an_interrupted_run_resumes_to_the_uninterrupted_summary(
    uninterrupted: dict[str, Any], tmp_path: Path, signum: int, workers: int, whole_group: bool
) -> None:
    out = tmp_path / "summary.json"
    journal = tmp_path / "summary.json.trials.jsonl"
    args = [*RUN, "--workers", str(workers), "--out", str(out)]
    proc = start(args, start_new_session=True)
    deadline = time.monotonic() + 240
    while journal_lines(journal) < 2:  # the header and one finished trial
        assert proc.poll() is None, f"the run ended before a trial finished: {proc.communicate()}"
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(0.02)
    workers_pids = children(proc.pid)
    if whole_group:
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 128 + signum, stderr
    assert "run the same command again to resume" in stderr, stderr
    assert not out.exists(), "an interrupted run must not write a partial summary"
    kept = journal_lines(journal) - 1
    assert 1 <= kept < 4, f"{kept} trials kept; the signal must land between trials"
    time.sleep(0.2)
    assert not [p for p in workers_pids if alive(p)], "worker processes outlived the run"

    resumed = start(args)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert f"resuming: {kept} of 4 trials already finished" in stderr
    assert without_timings(json.loads(out.read_text())) == uninterrupted
    assert not journal.exists(), "the journal is removed once the summary holds every trial"


# --- the journal --------------------------------------------------------------------------------


def test_journal_keeps_records_drops_a_torn_last_line_and_refuses_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "run.trials.jsonl"
    journal = TrialJournal(path, {"steps": 100, "algo": "step"})
    journal.record("seed=0", {"seed": 0, "x": [0.5, 1]})
    journal.record("seed=1", {"seed": 1, "x": [0.25, 2]})
    journal.close()
    with path.open("ab") as file:  # a crash in the middle of writing the third record
        file.write(b'{"key": "seed=2", "rec')
    reopened = TrialJournal(path, {"algo": "step", "steps": 100})
    assert reopened.finished == {"seed=0": {"seed": 0, "x": [0.5, 1]}, "seed=1": {"seed": 1, "x": [0.25, 2]}}
    assert reopened.session == 2
    reopened.record("seed=2", {"seed": 2, "x": []})
    reopened.close()
    assert path.read_text().count("\n") == 4 and path.read_text().endswith("\n")
    with pytest.raises(ResumeMismatchError, match=r"other settings \(differing: algo, steps\)"):
        TrialJournal(path, {"steps": 200, "algo": "mappo"})


def test_journal_refuses_a_file_that_is_not_a_journal_and_a_second_writer(tmp_path: Path) -> None:
    (tmp_path / "notes.jsonl").write_text("my notes\n")
    with pytest.raises(ResumeMismatchError, match="is not a trial journal"):
        TrialJournal(tmp_path / "notes.jsonl", {})
    first = TrialJournal(tmp_path / "run.jsonl", {})
    with pytest.raises(RuntimeError, match="another run is writing to"):
        TrialJournal(tmp_path / "run.jsonl", {})
    first.close()
    TrialJournal(tmp_path / "run.jsonl", {}).close()


def _square(job: int) -> dict[str, Any]:
    if job == 3:
        raise ArithmeticError("trial three cannot be done")
    return {"job": job, "square": job * job}


@pytest.mark.parametrize("workers", [1, 2])
def test_run_trials_keeps_job_order_and_the_trials_before_a_failure(tmp_path: Path, workers: int) -> None:
    journal = TrialJournal(tmp_path / "j.jsonl", {})
    jobs = [(f"job={j}", j) for j in (5, 1, 4)]
    assert run_trials(jobs, _square, workers=workers, journal=journal) == [
        {"job": 5, "square": 25}, {"job": 1, "square": 1}, {"job": 4, "square": 16}]
    # In the pool a failure comes back naming the trial; in this process it keeps its type.
    with pytest.raises(RuntimeError if workers > 1 else ArithmeticError, match="trial three"):
        run_trials([*jobs, ("job=3", 3), ("job=2", 2)], _square, workers=workers, journal=journal)
    assert {"job=5", "job=1", "job=4"} <= set(journal.finished)
    journal.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_an_in_process_trial_keeps_the_finished_ones(tmp_path: Path, signum: int) -> None:
    journal = TrialJournal(tmp_path / "j.jsonl", {})
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def second_is_interrupted(job: int) -> dict[str, Any]:
        if job == 2:
            os.kill(os.getpid(), signum)
            time.sleep(10)  # the handler raises here, long before the sleep ends
        return {"job": job}

    jobs = [(f"job={j}", j) for j in (1, 2, 3)]
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        run_trials(jobs, second_is_interrupted, workers=1, journal=journal)
    assert time.monotonic() - started < 5
    assert exit_info.value.code == 128 + signum
    assert journal.finished == {"job=1": {"job": 1}}
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers, "handlers restored"
    journal.close()
    calls: list[int] = []

    def counted(job: int) -> dict[str, Any]:
        calls.append(job)
        return {"job": job}

    resumed = TrialJournal(tmp_path / "j.jsonl", {})
    records = run_trials(jobs, counted, workers=1, journal=resumed)
    assert calls == [2, 3] and records == [{"job": 1}, {"job": 2}, {"job": 3}]
    resumed.close()


def test_run_trials_skips_what_the_journal_holds(tmp_path: Path) -> None:
    journal = TrialJournal(tmp_path / "j.jsonl", {})
    journal.record("job=1", {"job": 1, "square": "from the journal"})
    calls = []

    def counted(job: int) -> dict[str, Any]:
        calls.append(job)
        return _square(job)

    records = run_trials([("job=1", 1), ("job=2", 2)], counted, workers=1, journal=journal)
    assert calls == [2]
    assert records == [{"job": 1, "square": "from the journal"}, {"job": 2, "square": 4}]
    journal.close()


# --- resuming the other scripts, and their usage errors ----------------------------------------


def test_reproduce_matrix_resumes_after_a_failing_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_script("reproduce_matrix")
    # One trial at a time (--population 1): the resume of single trials (populations:
    # tests/test_population.py).
    argv = ["--algos", "step", "--settings", "mixing", "penalty-100", "--trials", "1", "--steps", "400",
            "--workers", "1", "--population", "1"]
    reference = module.main([*argv, "--out", str(tmp_path / "reference")])

    real, calls = module.run_trial, []

    def fails_second(job: tuple[str, str, int, int]) -> dict[str, Any]:
        calls.append(job)
        if len(calls) == 2:
            raise OSError("simulated crash in the second trial")
        return real(job)  # type: ignore[no-any-return]

    monkeypatch.setattr(module, "run_trial", fails_second)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="simulated crash"):
        module.main([*argv, "--out", str(out)])
    assert journal_lines(out / "trials.jsonl") == 2 and not (out / "matrix_results.json").exists()
    calls.clear()

    def counted(job: tuple[str, str, int, int]) -> dict[str, Any]:
        calls.append(job)
        return real(job)

    monkeypatch.setattr(module, "run_trial", counted)
    summary = module.main([*argv, "--out", str(out)])
    assert calls == [("step", "penalty-100", 400, 0)], "only the missing trial is trained"
    expected = {k: v for k, v in reference.items() if k != "command"}
    assert without_timings({k: v for k, v in summary.items() if k != "command"}) == without_timings(expected)
    assert not (out / "trials.jsonl").exists()


def test_train_continuous_resumes_after_a_failing_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_script("train_continuous")
    argv = ["--seeds", "2", "--steps", "400", "--workers", "1"]
    reference = module.main([*argv, "--out", str(tmp_path / "reference.json")])
    real, calls = module._trial, []

    def fails_second(job: Any) -> dict[str, Any]:
        calls.append(job[2])
        if len(calls) == 2:
            raise OSError("simulated crash in the second seed")
        return real(job)  # type: ignore[no-any-return]

    monkeypatch.setattr(module, "_trial", fails_second)
    out = tmp_path / "run.json"
    with pytest.raises(OSError, match="simulated crash"):
        module.main([*argv, "--out", str(out)])
    calls.clear()

    def counted(job: Any) -> dict[str, Any]:
        calls.append(job[2])
        return real(job)

    monkeypatch.setattr(module, "_trial", counted)
    summary = module.main([*argv, "--out", str(out)])
    assert calls == [1], "only seed 1 is trained again"
    assert without_timings(summary) == without_timings(reference)
    assert without_timings(json.loads(out.read_text())) == without_timings(reference)


def test_a_journal_of_other_settings_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    module = load_script("train_matrix")
    out = tmp_path / "o.json"
    TrialJournal(module.journal_path(str(out)), {"script": "train_matrix", "steps": 1}).close()
    with pytest.raises(SystemExit, match=r"error: .*other settings \(differing: algo, config, payoffs, steps\)"):
        module.main(["--steps", "200", "--trials", "1", "--workers", "1", "--out", str(out)])


def usage_error(parse: Any, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2, "a usage error exits with status 2"
    return capsys.readouterr().err


def test_train_matrix_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parse = load_script("train_matrix").parse_args
    (tmp_path / "game.csv").write_text("1,2\n3,4\n")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "bools.npy", np.ones((2, 2, 2), dtype=bool))
    (tmp_path / "text.npy").write_text("not numpy")
    (tmp_path / "file").write_text("")
    cases = {
        ("--seed", "-1"): "--seed must lie in 0..4294967286",
        ("--n-envs", "0"): "--n-envs must be positive, got 0",
        ("--trials", "0"): "--trials must be positive, got 0",
        ("--payoffs", str(tmp_path / "game.csv")): "is not a .npy file; save the payoff array with numpy.save",
        ("--payoffs", str(tmp_path / "missing.npy")): "no file",
        ("--payoffs", str(tmp_path / "objects.npy")): "holds Python objects, not numbers",
        ("--payoffs", str(tmp_path / "bools.npy")): r"dtype bool \(booleans\)",
        ("--payoffs", str(tmp_path / "text.npy")): r"is not a \.npy file \(it does not start like one\)",
        ("--out", str(tmp_path / "file" / "sub" / "o.json")): "--out: .*cannot write to",
        ("--algo", "maddpg", "--n-envs", "2"): "apply to the PPO-family algorithms",
    }
    for argv, message in cases.items():
        err = usage_error(parse, list(argv), capsys)
        assert re.search(message, err), f"{argv}: {err}"


def test_reproduce_and_continuous_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    reproduce = load_script("reproduce_matrix").parse_args
    assert "--seed must lie in 0.." in usage_error(reproduce, ["--seed", "-1"], capsys)
    assert "--out: " in usage_error(reproduce, ["--out", str(tmp_path / "file" / "run")], capsys)
    continuous = load_script("train_continuous").main
    assert "--out: " in usage_error(continuous, ["--out", str(tmp_path / "file" / "c.json")], capsys)


@pytest.mark.parametrize("content", ["{not json", '{"command": "x"}', "[1, 2]"])
def test_reproduce_from_a_malformed_json_is_a_clear_error(tmp_path: Path, content: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = subprocess.run([sys.executable, str(ROOT / "examples/reproduce_matrix.py"), "--from-json",
                             str(bad), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert f"--from-json {bad}: not a matrix_results.json written by this script" in result.stderr
    assert "Traceback" not in result.stderr
