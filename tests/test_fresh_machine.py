"""What a new user meets first: usage errors, Ctrl-C, bad paths and values, broken checkpoints,
partial results trees, and the report's comparisons. Runs in a plain clone (shipped agents only)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchctl.execute import Eta
from benchctl.report.render import build_report
from benchctl.report.synthetic import write_cell
from tests.conftest import REPO, run_cli
from tests.test_cli_errors import one_line_error

SHIPPED = REPO / "checkpoints" / "tdmpc2" / "demo" / "cartpole-swingup-1.pt"


def smoke(*extra: str) -> list[str]:
    """`benchctl eval` of the shipped cartpole-swingup agent on the smoke suite (100-step episodes)."""
    return ["eval", "--suite", "smoke", "--checkpoint", str(SHIPPED), "--task", "cartpole-swingup", *extra]


def test_every_command_starts():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "eval" in proc.stdout, proc.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (["eval", "--episodes", "0"], "'--episodes'"),
        (["eval", "--episode", "2"], "No such option: --episode"),
        (["eval", "--episodes", "abc"], "'--episodes'"),
        (["eval", "--episodes", "1000000000000000000000000000000"], "'--episodes'"),
        (["eval", "--set"], "'--set' requires an argument"),
        (["report", "--reps", "many"], "'--reps'"),
        (["train", "--steps", "-5", "--task", "cartpole-swingup"], "'--steps'"),
        (["train", "--task", "cartpole-swingup", "--collect-interval", "10"], "the option is Dreamer's"),
        (["eval", "--unknown-flag"], "No such option"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args, needle):
    one_line_error(run_cli(*args), needle)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--run", "../../escape"], "--run '../../escape'"),
        (["--run", ".."], "--run '..'"),
        (["--seeds", "-3"], "--seeds -3"),
        (["--threads", "0"], "--threads 0"),
        (["--set", "temperature=nan", "--planner", "mppi"], "finite"),
    ],
)
def test_invalid_values_are_refused_before_anything_is_written(tmp_path, args, needle):
    out = tmp_path / "inside" / "results"
    one_line_error(run_cli(*smoke("--out", str(out), *args)), needle)
    assert not list(tmp_path.rglob("*.jsonl"))


def test_output_paths_that_cannot_be_written(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    one_line_error(run_cli(*smoke("--out", str(a_file))), "is a file, not a folder")
    one_line_error(run_cli(*smoke("--out", str(a_file / "below"))), "cannot write there")
    if os.geteuid() == 0:  # root writes into read-only folders: use a read-only filesystem instead
        read_only = Path("/sys/benchctl-test")
    else:
        read_only = tmp_path / "locked"
        read_only.mkdir()
        read_only.chmod(0o555)
    one_line_error(run_cli(*smoke("--out", str(read_only / "results"))), "cannot write there")
    results = tmp_path / "results"
    write_cell(results, "tdmpc2", "dmc", "acrobot-swingup", "policy", 1, [100.0])
    one_line_error(run_cli("report", str(results), "--out", str(a_file)), "is a file, not a folder")


def test_ctrl_c_keeps_finished_episodes_says_how_to_resume_and_exits_130(tmp_path):
    out = tmp_path / "results"
    args = smoke("--planner", "policy", "--episodes", "10000", "--out", str(out))
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchctl", *args],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # a shell's background jobs ignore SIGINT, and children inherit that: give this one Ctrl-C back
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for two finished episodes on disk
        files = list(out.rglob("seed-*.jsonl"))
        if files and len(files[0].read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "rerun the same command" in stderr and "Traceback" not in stderr
    kept = [json.loads(line) for line in files[0].read_text().splitlines()[1:]]
    assert len(kept) >= 2 and [e["episode"] for e in kept] == list(range(len(kept)))
    # The same command resumes: asking for one more episode than kept runs exactly that one.
    proc = run_cli(*smoke("--planner", "policy", "--episodes", str(len(kept) + 1), "--out", str(out)))
    assert proc.returncode == 0, proc.stderr
    assert f"resuming: {len(kept)} of {len(kept) + 1}" in proc.stderr
    assert len(files[0].read_text().splitlines()) == len(kept) + 2


def test_a_ctrl_c_whose_keyboardinterrupt_was_swallowed_still_stops_after_the_episode():
    """CPython can lose a KeyboardInterrupt raised while C code (torch, numpy) calls back into Python
    (lost in 2 of 210 interrupted evaluations here). The Ctrl-C is remembered: the next finished episode,
    already on disk, raises it again; in training, the next training episode. Where Ctrl-C is ignored (a
    background job) it stays ignored."""
    from benchctl.cli.console import ctrl_c_remembered
    from benchctl.cli.evaluation import RichReporter
    from benchctl.cli.training import TrainProgress

    record = {"episode": 3, "return": 1.0, "latency_ms": {"p50": 0.2}}
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's foreground process
    try:
        reporter = RichReporter()
        reporter.start(10, 0, None)
        with ctrl_c_remembered(reporter):
            reporter.episode("cell", record)  # nothing pressed: the run goes on
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # the handler runs here
            except KeyboardInterrupt:
                pass  # what the C code that lost it did
            assert reporter.interrupted
            with pytest.raises(KeyboardInterrupt):
                reporter.episode("cell", record | {"episode": 4})
        reporter.stop()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored

        training = TrainProgress()
        training.start(1000, 0)
        info = {"episode": 2, "return": 5.0, "value_loss": 0.1}
        with ctrl_c_remembered(training):
            training.progress(200, info)
            with contextlib.suppress(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            with pytest.raises(KeyboardInterrupt):
                training.progress(300, info | {"episode": 3})
        training.stop()

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # `benchctl eval ... &`: the shell ignores Ctrl-C for it
        quiet = RichReporter()
        with ctrl_c_remembered(quiet):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
        assert not quiet.interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _checkpoint_with(tmp_path: Path, change) -> Path:
    blob = torch.load(SHIPPED, weights_only=True)
    change(blob["model"])
    path = tmp_path / "cartpole-swingup-1.pt"
    torch.save(blob, path)
    return path


def test_nan_weights_are_refused_at_load_naming_the_tensor(tmp_path):
    def poison(state):
        state["_dynamics.0.weight"][0, 0] = float("nan")

    path = _checkpoint_with(tmp_path, poison)
    args = ["eval", "--suite", "smoke", "--checkpoint", str(path), "--task", "cartpole-swingup"]
    one_line_error(run_cli(*args, "--out", str(tmp_path / "r")), str(path), "_dynamics.0.weight", "non-finite")
    one_line_error(run_cli("inspect", str(path)), "_dynamics.0.weight")


def test_non_finite_actions_end_the_episode_as_a_recorded_failure(tmp_path):
    """Finite weights so large that the encoder overflows: NaN actions, caught before the simulator."""

    def blow_up(state):
        state["_encoder.state.0.weight"].mul_(1e37)

    path = _checkpoint_with(tmp_path, blow_up)
    out = tmp_path / "results"
    args = ["eval", "--suite", "smoke", "--checkpoint", str(path), "--task", "cartpole-swingup", "--out", str(out)]
    proc = run_cli(*args, "--planner", "policy", "--episodes", "2")
    assert proc.returncode == 0, proc.stderr
    assert "failed: non-finite action at step 0" in proc.stderr
    lines = next(out.rglob("seed-*.jsonl")).read_text().splitlines()
    episodes = [json.loads(line) for line in lines[1:]]
    assert len(episodes) == 2 and all("non-finite action" in e["failed"] for e in episodes)
    report = build_report([out], tmp_path / "report", reps=100, formats=["md"])
    assert any(w.startswith("failed episodes: policy on cartpole-swingup: 2 of 2") for w in report.warnings)
    assert "failed episodes" in (tmp_path / "report" / "report.md").read_text()


def test_report_on_header_only_files(tmp_path):
    """What an eval killed before its first episode leaves: one line, or a warning beside real results."""
    results = tmp_path / "results"
    write_cell(results, "tdmpc2", "dmc", "acrobot-swingup", "policy", 1, [])
    one_line_error(run_cli("report", str(results), "--out", str(tmp_path / "r1")), "hold only headers")
    for seed in (1, 2):
        write_cell(results, "tdmpc2", "dmc", "acrobot-swingup", "mppi", seed, [300.0, 320.0])
    write_cell(results, "tdmpc2", "dmc", "acrobot-swingup", "policy", 2, [200.0])
    report = build_report([results], tmp_path / "r2", reps=100, formats=["md"])
    assert any("header only, no finished episode" in w for w in report.warnings)


def two_families(root: Path) -> None:
    """TD-MPC2 and BMPC agents, as the quickstart evaluates them: runs `tdmpc2` and `bmpc`."""
    for run, offset in (("tdmpc2", 0.0), ("bmpc", 50.0)):
        for planner, base in (("policy", 300.0), ("dream_mpc", 400.0)):
            for seed in (1, 2, 3):
                for t, task in enumerate(("acrobot-swingup", "fish-swim")):
                    mean = base + offset + 10 * seed + 20 * t
                    write_cell(root, run, "dmc", task, planner, seed, [mean - 5, mean + 5])


def test_baseline_by_planner_name_matches_within_each_family(tmp_path):
    two_families(tmp_path / "results")
    report = build_report([tmp_path / "results"], tmp_path / "r", reps=100, formats=["csv"], baseline="policy")
    assert set(report.improvement) == {"tdmpc2/dream_mpc > tdmpc2/policy", "bmpc/dream_mpc > bmpc/policy"}
    assert all(p == 1.0 for p, _ in report.improvement.values())
    rows = (tmp_path / "r" / "probability_of_improvement.csv").read_text().splitlines()
    assert len(rows) == 3  # header + the two within-family pairs
    # A method's full name still picks that one method, across families.
    exact = build_report([tmp_path / "results"], tmp_path / "e", reps=100, formats=["csv"], baseline="bmpc/policy")
    assert "tdmpc2/dream_mpc > bmpc/policy" in exact.improvement


def test_unmatched_baseline_is_a_warning_not_an_empty_table(tmp_path):
    two_families(tmp_path / "results")
    report = build_report([tmp_path / "results"], tmp_path / "r", reps=100, formats=["md"], baseline="polcy")
    assert any("baseline 'polcy' matches no method or planner" in w for w in report.warnings)
    assert "baseline 'polcy' matches no method" in (tmp_path / "r" / "report.md").read_text()


def test_single_seed_results_say_their_intervals_cannot_be_estimated(tmp_path):
    root = tmp_path / "results"
    for planner, value in (("policy", 300.0), ("mppi", 500.0)):
        write_cell(root, "tdmpc2", "dmc", "acrobot-swingup", planner, 1, [value, value + 20])
    report = build_report([root], tmp_path / "r", reps=100, formats=["md"])
    assert any("confidence intervals cannot be estimated for mppi, policy" in w for w in report.warnings)
    assert "P(X > Y) can only be 0, 0.5 or 1" in (tmp_path / "r" / "report.md").read_text()
    two_families(tmp_path / "three_seeds")
    report = build_report([tmp_path / "three_seeds"], tmp_path / "r3", reps=100, formats=["md"])
    assert not any("cannot be estimated" in w for w in report.warnings)


def test_contended_latency_is_flagged(tmp_path):
    root = tmp_path / "results"
    tasks = ("acrobot-swingup", "fish-swim", "hopper-hop")
    # across episodes: one episode's median step latency 20x its cell's
    write_cell(root, "tdmpc2", "dmc", tasks[0], "mppi", 1, [500.0] * 4, episode_latency_ms=[40, 41, 900, 40])
    # within an episode: p95 10x the median
    write_cell(root, "tdmpc2", "dmc", tasks[0], "dream_mpc", 1, [500.0] * 2, episode_latency_ms=[6.0, (6.0, 60.0)])
    # across cells: the policy at 8 ms/step on one task, 0.3 on the others
    for task, ms in zip(tasks, (0.3, 0.3, 8.0), strict=True):
        write_cell(root, "tdmpc2", "dmc", task, "policy", 1, [300.0] * 2, latency_ms=ms)
    for task in tasks[1:]:  # quiet cells: normal spread (p95 1.3x the median)
        write_cell(root, "tdmpc2", "dmc", task, "mppi", 1, [500.0] * 2, episode_latency_ms=[(40, 52)] * 2)
        write_cell(root, "tdmpc2", "dmc", task, "dream_mpc", 1, [500.0] * 2, latency_ms=6.0)
    busy_but_quiet = {"cpu_count": 2, "affinity": [0, 1], "load_avg": [5.2, 3.0, 1.0], "contended_at_start": True}
    write_cell(root, "other", "dmc", tasks[0], "policy", 1, [300.0] * 2, latency_ms=0.3, machine=busy_but_quiet)
    report = build_report([root], tmp_path / "r", reps=100, formats=["md"])
    flagged = sorted(w for w in report.warnings if w.startswith("contended latency"))
    assert len(flagged) == 3, report.warnings
    assert f"tdmpc2/dream_mpc on {tasks[0]} seed 1: 1 of 2 episode(s)" in flagged[0]
    assert f"tdmpc2/mppi on {tasks[0]} seed 1: 1 of 4 episode(s)" in flagged[1]
    assert f"tdmpc2/policy on {tasks[2]} seed 1: median 8.0 ms/step, over 3x" in flagged[2]
    # the trailing load average alone decides nothing (a pip install before an eval still shows in it)
    assert not any("other/" in w for w in flagged)
    assert "| contended cells |" in (tmp_path / "r" / "report.md").read_text()


def test_eval_records_the_machine_and_pins_threads(tmp_path):
    out = tmp_path / "results"
    proc = run_cli(*smoke("--planner", "policy", "--episodes", "1", "--threads", "1", "--out", str(out)))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in next(out.rglob("seed-*.jsonl")).read_text().splitlines()]
    machine = lines[0]["machine"]
    assert machine["torch_threads"] == 1 and machine["affinity"] and len(machine["load_avg"]) == 3
    # the CPU by model and the vector instructions torch runs on it (AVX2 and AVX512 hosts of one
    # model name differ ~3x in matrix products), and whether it multiplies bfloat16 in hardware
    isa = torch.backends.cpu.get_cpu_capability()
    assert lines[0]["device_name"] == f"{machine['cpu']}, 1 threads" and f"({isa}" in machine["cpu"]
    if platform.machine() == "x86_64":  # torch's own detection agrees with the CPU's flags
        hardware = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        assert machine["bfloat16_units"] == hardware
    assert isinstance(lines[1]["load_avg"], float)


def test_eta_is_unknown_until_every_planner_with_work_left_has_a_rate():
    eta = Eta({"policy": 1000, "mppi": 1000})
    assert eta.remaining() is None
    eta.finished("policy", 500, {"wall_s": 1.0, "length": 500})
    assert eta.remaining() is None  # mppi's rate is not known: no guess from the policy's
    eta.finished("mppi", 500, {"wall_s": 20.0, "length": 500})
    assert eta.remaining() == pytest.approx(500 * 1.0 / 500 + 500 * 20.0 / 500)


def test_aggregate_figure_labels_do_not_overlap(tmp_path):
    """The x label sits below every tick label, and neighbouring panels' tick labels stay apart."""
    import matplotlib.pyplot as plt

    from benchctl.report import plots

    points = {f"family/planner_{i}": np.array([0.4 + 0.1 * i, 0.5, 0.6, 0.3]) for i in range(3)}
    cis = {m: np.stack([p - 0.05, p + 0.05]) for m, p in points.items()}
    fig = plots.aggregate_figure(points, cis)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    label = next(t for t in fig.texts if "Normalized score" in t.get_text()).get_window_extent(renderer)
    panels = []
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [
            t.get_window_extent(renderer)
            for t, x in zip(ax.get_xticklabels(), ax.get_xticks(), strict=True)
            if t.get_text() and low <= x <= high  # ticks outside the limits are not drawn
        ]
        assert all(label.y1 < t.y0 for t in ticks)
        panels.append((min(t.x0 for t in ticks), max(t.x1 for t in ticks)))
    for (_, right), (left, _) in zip(panels, panels[1:], strict=False):
        assert right < left
    plt.close(fig)


def test_per_task_whiskers_use_episodes_when_there_is_one_seed():
    from benchctl.report.plots import _mean_ci

    rng = np.random.default_rng(0)
    low, high = _mean_ci(np.array([0.2, 0.4, 0.6, 0.8]), rng)
    assert low < 0.5 < high
    assert _mean_ci(np.array([0.7]), rng) == (0.7, 0.7)


@pytest.mark.parametrize("require,outcome", [("", "1 skipped"), ("1", "1 error")])
def test_tests_needing_shared_files_skip_in_a_clone_and_fail_in_ci(tmp_path, require, outcome):
    """A user's clone has no ../shared: its tests skip saying what is missing; CI must not skip them."""
    env = dict(os.environ, BENCHCTL_REFERENCE=str(tmp_path / "no-shared"), BENCHCTL_REQUIRE_EXTERNAL=require)
    test = "tests/test_checkpoints.py::test_fused_step_equals_next_and_reward"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-rsf", "-p", "no:cacheprovider", test],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert outcome in proc.stdout, proc.stdout
    assert f"needs the official reference checkpoints in {tmp_path / 'no-shared'}" in proc.stdout
