"""Fair comparisons: `benchctl sweep`, `eval --match`, and reference scores in `benchctl report`,
end to end on real dm_control episodes of the shipped agents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchctl import machine
from benchctl.errors import BenchctlError
from benchctl.report import reference
from benchctl.sweep import expand
from tests.conftest import REPO, run_cli

# The shipped TD-MPC2 demo agents of the smoke suite's two tasks (the Dreamer cartpole-swingup agent
# would be a third agent, in its own run)
SMOKE = ["--suite", "smoke", "--checkpoints", str(REPO / "checkpoints" / "tdmpc2" / "demo"), "--seeds", "1",
         "--episodes", "1", "--threads", "1"]  # fmt: skip


def cells(out: Path) -> list[tuple[dict, list[dict]]]:
    """(header, episodes) of every cell under `out`."""
    found = []
    for path in sorted(out.rglob("seed-*.jsonl")):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        found.append((lines[0], lines[1:]))
    return found


# -- grids ------------------------------------------------------------------------------------
def test_grid_expands_to_the_product_with_set_underneath():
    specs = expand(
        ["dream_mpc", "mppi", "policy"],
        ["dream_mpc.horizon=1,3", "iterations=1,2,2", "mppi.num_samples=64"],
        ["lr=0.05"],
    )
    dream = [s for s in specs if s.name == "dream_mpc"]
    assert sorted((s.config.horizon, s.config.iterations) for s in dream) == [(1, 1), (1, 2), (3, 1), (3, 2)]
    assert {s.config.lr for s in dream} == {0.05}  # --set applies to every point
    mppi = [s for s in specs if s.name == "mppi"]
    # `iterations` has no planner prefix: every planner having the option is swept (mppi has it too).
    assert sorted((s.config.num_samples, s.config.iterations) for s in mppi) == [(64, 1), (64, 2)]
    assert [s.point for s in specs if s.name == "policy"] == [{}]  # no option swept: runs once
    assert dream[0].grid == {"dream_mpc.horizon": [1, 3], "dream_mpc.iterations": [1, 2]}
    assert len({s.label for s in specs}) == len(specs)


@pytest.mark.parametrize(
    "grid, message",
    [
        (["dream_mpc.horizon"], "is not key=v1,v2"),
        (["dream_mpc.horizon=1,0"], "--grid horizon=0: dream_mpc.horizon must be >= 1"),
        (["dream_mpc.horizn=1,3"], "did you mean 'horizon'"),
        (["mppi.horizon=1,3"], "planner 'mppi' is not among --planner dream_mpc"),
        (["dream_mpc.horizon=1", "dream_mpc.horizon=3"], "given twice"),
    ],
)
def test_bad_grids_are_one_line_errors(grid, message):
    with pytest.raises(BenchctlError, match=message):
        expand(["dream_mpc"], grid, [])


def test_bad_grid_from_the_cli_exits_2_with_one_line(tmp_path):
    done = run_cli("sweep", *SMOKE, "--grid", "dream_mpc.horizon=a,b", "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("benchctl: error: --grid horizon=a: dream_mpc.horizon takes")
    assert "Traceback" not in done.stderr


# -- sweep, match, report ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A 2 x 2 Dream-MPC sweep (horizon x iterations) plus the policy on the smoke suite."""
    out = tmp_path_factory.mktemp("sweep") / "results"
    done = run_cli(
        "sweep",
        *SMOKE,
        "--planner",
        "dream_mpc",
        "--planner",
        "policy",
        "--grid",
        "dream_mpc.horizon=1,3",
        "--grid",
        "dream_mpc.iterations=1,2",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    return out


def test_sweep_cells_are_ordinary_cells_with_the_grid_in_their_headers(sweep):
    found = cells(sweep)
    assert len(found) == 2 * 5  # two tasks x (4 points + policy)
    for header, episodes in found:
        assert len(episodes) == 1 and "steady" in episodes[0]["latency_ms"]
        assert header["sweep"]["grid"] == (
            {"dream_mpc.horizon": [1, 3], "dream_mpc.iterations": [1, 2]} if header["planner"] == "dream_mpc" else {}
        )
        point = header["sweep"]["point"]
        assert all(header["planner_config"][k] == v for k, v in point.items())
        if header["planner"] == "dream_mpc":  # lambda_unc=None resolves per family: TD-MPC2's 0.01
            assert header["planner_effective"]["lambda_unc"] == 0.01
    assert {p.parent.parent.parent.parent.name for p in sweep.rglob("seed-*.jsonl")} == {"sweep-tdmpc2"}
    # Counted model work follows the point: Dream-MPC evaluates candidates x horizon x iterations.
    for header, episodes in found:
        if header["planner"] == "dream_mpc":
            c = header["planner_config"]
            assert episodes[0]["model_evals_per_step"] == c["candidates"] * c["horizon"] * c["iterations"]
    again = run_cli("sweep", *SMOKE, "--planner", "dream_mpc", "--grid", "dream_mpc.horizon=1,3", "--out", str(sweep))
    assert again.returncode == 0 and "4 of 4 episodes already on disk" in again.stderr  # the grid points it shares


def _measured(sweep: Path, kind: str) -> dict[str, tuple[float, float, dict]]:
    """Per dream_mpc config: (cost, score, config) from the raw files, as the match rule defines them:
    cost = median ms (steady p50) or mean evals over its episodes; score = mean over tasks of the
    per-task mean over seeds of each seed's mean normalized return."""
    costs: dict[str, list[float]] = {}
    scores: dict[str, dict[str, dict[int, list[float]]]] = {}
    for header, episodes in cells(sweep):
        if header["planner"] != "dream_mpc":
            continue
        key = json.dumps(header["planner_config"], sort_keys=True)
        for e in episodes:
            costs.setdefault(key, []).append(
                e["model_evals_per_step"] if kind == "evals" else e["latency_ms"]["steady"]["p50"]
            )
            per_seed = scores.setdefault(key, {}).setdefault(header["task"], {})
            per_seed.setdefault(header["seed"], []).append(e["return"] / header["normalization"]["divisor"])
    out = {}
    for key, values in costs.items():
        cost = float(np.mean(values)) if kind == "evals" else float(np.median(values))
        tasks = [np.mean([np.mean(v) for v in seeds.values()]) for seeds in scores[key].values()]
        out[key] = (cost, float(np.mean(tasks)), json.loads(key))
    return out


def test_match_picks_the_best_measured_config_within_the_budget_and_the_report_shows_it(sweep, tmp_path):
    measured = _measured(sweep, "evals")
    fitting = {k: v for k, v in measured.items() if v[0] <= 12}
    assert 0 < len(fitting) < len(measured)  # the budget binds
    best = max(fitting.values(), key=lambda v: (v[1], -v[0]))[2]

    done = run_cli(
        "eval", *SMOKE, "--planner", "dream_mpc", "--planner", "policy", "--match", "evals=12", "--out", str(sweep)
    )
    assert done.returncode == 0, done.stderr
    assert "--match evals=12: dream_mpc with" in done.stderr
    matched = [(h, e) for h, e in cells(sweep) if "match" in h]
    assert {h["planner"] for h, _ in matched} == {"dream_mpc", "policy"}
    for header, episodes in matched:
        assert header["match"]["budget"] == "evals=12"
        if header["planner"] == "dream_mpc":
            assert header["planner_config"] == best
            assert header["match"]["fitting"] == len(fitting) and header["match"]["candidates"] == len(measured)
            assert episodes[0]["model_evals_per_step"] <= 12
    assert all("match-evals12-tdmpc2" in str(p) for p in sweep.rglob("seed-*.jsonl") if "match" in str(p))

    report_dir = tmp_path / "report"
    done = run_cli("report", str(sweep), "--out", str(report_dir), "--reps", "200")
    assert done.returncode == 0, done.stderr
    sweeps = pd.read_csv(report_dir / "sweeps.csv")
    assert len(sweeps) == 4 and set(sweeps["option:horizon"]) == {1, 3} and set(sweeps["option:iterations"]) == {1, 2}
    matched_csv = pd.read_csv(report_dir / "matched.csv")
    row = matched_csv[matched_csv["planner"] == "dream_mpc"].iloc[0]
    assert row["budget"] == "evals=12" and row["cost_now"] <= 12
    assert row["chosen"] == f"horizon={best['horizon']}, iterations={best['iterations']}"
    text = (report_dir / "report.md").read_text()
    for section in ("## Parameter sweeps", "## Compute-matched comparison", "figures/sweeps.png"):
        assert section in text
    assert (report_dir / "figures" / "compute_frontier.png").stat().st_size > 10_000


def test_match_with_no_config_in_budget_names_the_cheapest(sweep):
    cheapest = min(_measured(sweep, "evals").values())
    done = run_cli("eval", *SMOKE, "--planner", "dream_mpc", "--match", "evals=1", "--out", str(sweep))
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert "none of the" in line and f"costs {cheapest[0]:.4g} evals per step" in line


def test_match_by_milliseconds_uses_steady_latency_measured_on_this_device(sweep, tmp_path):
    # A budget every config fits: the choice is the best score, whatever the machine's speed today.
    measured = _measured(sweep, "ms")
    best = max(measured.values(), key=lambda v: (v[1], -v[0]))[2]
    done = run_cli("eval", *SMOKE, "--planner", "dream_mpc", "--match", "ms=100000", "--out", str(sweep))
    assert done.returncode == 0, done.stderr
    header = next(h for h, _ in cells(sweep) if h.get("match", {}).get("budget") == "ms=100000")
    assert header["planner_config"] == best and header["match"]["unit"].startswith("ms per planning step")
    # Latency measured with another thread count is another device: nothing to choose from.
    other = run_cli("eval", *SMOKE[:-1], "2", "--planner", "dream_mpc", "--match", "ms=100000", "--out", str(sweep))
    assert other.returncode == 2 and "measured on this machine" in other.stderr


# -- references ---------------------------------------------------------------------------------
def write_tdmpc2_csv(folder: Path) -> Path:
    """Two tasks in the TD-MPC2 repository's format and naming (cartpole-swingup-sparse)."""
    folder.mkdir(parents=True)
    lines = ["step,reward,seed"]
    for seed, values in ((1, (0.0, 100.0, 700.0)), (2, (0.0, 200.0, 800.0)), (3, (0.0, 300.0, 900.0))):
        lines += [f"{step},{v},{seed}" for step, v in zip((0, 100000, 200000), values, strict=True)]
    (folder / "cartpole-swingup-sparse.csv").write_text("\n".join(lines) + "\n")
    (folder / "acrobot-swingup.csv").write_text("step,reward,seed\n0,1.0,1\n100000,50.0,1\n200000,60.0,1\n")
    return folder


def test_tdmpc2_csv_reads_each_seed_at_the_chosen_step_under_benchctl_names(tmp_path):
    ref = reference.tdmpc2_csv(write_tdmpc2_csv(tmp_path / "tdmpc2"), 100_000)
    sparse = ref.scores[ref.scores["task"] == "cartpole-swingup_sparse"]
    assert sorted(sparse["value"]) == [100.0, 200.0, 300.0] and set(sparse["step"]) == {100000}
    assert ref.label == "ref: tdmpc2 csv @ 100k" and ref.per_seed
    final = reference.tdmpc2_csv(tmp_path / "tdmpc2", None)
    assert sorted(final.scores.loc[final.scores["task"] == "cartpole-swingup_sparse", "value"]) == [700, 800, 900]
    shipped = reference.tdmpc2_csv(reference.TDMPC2_CSV, 100_000)  # the curves benchctl ships
    assert {"ball_in_cup-catch", "cartpole-swingup_sparse", "assembly"} <= set(shipped.scores["task"])
    acrobot = shipped.scores[shipped.scores["task"] == "acrobot-swingup"]["value"]
    assert len(acrobot) == 3 and abs(acrobot.mean() - 179.1) < 0.1  # the official size-5 curve at 100k


def test_paper_tables_hold_every_task_of_the_benchmark():
    refs = {r.label: r for r in reference.paper_tables()}
    assert len(refs) == 10
    dream = refs["ref: Dream-MPC (TD-MPC2) [paper]"].scores.set_index("task")
    assert len(dream) == 24
    assert (dream.loc["acrobot-swingup", "value"], dream.loc["acrobot-swingup", "std"]) == (590.0, 40.0)
    assert dream.loc["shelf-place", "value"] == 1.0 and dream.loc["h1hand-reach-v0", "value"] == 2751.0
    assert len(refs["ref: TD-MPC2 (policy only) [paper]"].scores) == 24


@pytest.mark.parametrize("bad", ["tdmpc3-csv", "dream-mpc-paper=x", "tdmpc2-csv="])
def test_bad_reference_is_one_line(bad, tmp_path):
    done = run_cli("report", str(tmp_path), "--reference", bad)
    assert done.returncode == 2 and done.stderr.strip().startswith(f"benchctl: error: --reference {bad}:")


@pytest.fixture(scope="module")
def demo_policy(tmp_path_factory) -> Path:
    """The policy of the shipped acrobot-swingup and cartpole-swingup_sparse agents, 2 episodes each."""
    results = tmp_path_factory.mktemp("demo") / "results"
    tasks = "acrobot-swingup,cartpole-swingup_sparse"
    done = run_cli("eval", "--suite", "demo", "--tasks", tasks, "--planner", "policy", "--seeds", "1",
                   "--episodes", "2", "--threads", "1", "--out", str(results))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return results


def test_references_render_as_labeled_rows_and_leave_the_aggregates_alone(demo_policy, tmp_path):
    results = demo_policy
    csv_dir = write_tdmpc2_csv(tmp_path / "tdmpc2")
    plain, with_refs, in_aggs = tmp_path / "plain", tmp_path / "refs", tmp_path / "aggs"
    common = [str(results), "--reps", "200", "--format", "md,csv"]
    assert run_cli("report", *common, "--out", str(plain)).returncode == 0
    refs = ["--reference", f"tdmpc2-csv={csv_dir}", "--reference", "dream-mpc-paper", "--reference-step", "100000"]
    done = run_cli("report", *common, "--out", str(with_refs), *refs)
    assert done.returncode == 0, done.stderr
    text = (with_refs / "report.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| task |"))
    assert "ref: tdmpc2 csv @ 100k" in header and "ref: Dream-MPC (TD-MPC2) [paper]" in header
    sparse = next(line for line in text.splitlines() if line.startswith("| cartpole-swingup_sparse |"))
    assert "200.0 ± 100.0" in sparse  # seeds 100/200/300 at 100k: mean and sample std
    assert "847.0 ± 3.0" in sparse  # Table 8, Dream-MPC (TD-MPC2)
    assert "**" not in sparse.split("|")[3]  # references are never marked best
    assert "references (not measured by benchctl)" in text and "cup-catch = ball_in_cup-catch" in text
    plain_aggs = pd.read_csv(plain / "aggregates.csv")
    pd.testing.assert_frame_equal(plain_aggs, pd.read_csv(with_refs / "aggregates.csv"))
    # As the TD-MPC2 users write it: `--reference tdmpc2-csv DIR`, DIR landing among the results folders.
    spaced = tmp_path / "spaced"
    done = run_cli("report", "--reference", "tdmpc2-csv", str(csv_dir), *common, "--out", str(spaced))
    assert done.returncode == 0, done.stderr
    assert "ref: tdmpc2 csv (final step)" in (spaced / "report.md").read_text()

    done = run_cli("report", *common, "--out", str(in_aggs), *refs, "--reference-aggregates")
    assert done.returncode == 0, done.stderr
    aggs = pd.read_csv(in_aggs / "aggregates.csv")
    assert set(aggs["method"]) == {"policy", "ref: tdmpc2 csv @ 100k"}  # the paper has no per-seed scores
    assert "no per-seed scores" in done.stderr
    pd.testing.assert_frame_equal(plain_aggs, aggs[aggs["method"] == "policy"].reset_index(drop=True))
    ref_mean = aggs[(aggs["method"] == "ref: tdmpc2 csv @ 100k") & (aggs["metric"] == "Mean")]["point"].item()
    assert ref_mean == pytest.approx(np.mean([50.0 / 1000, 100.0 / 1000]))  # seed 1 alone is on both tasks


def test_references_skip_tasks_measured_under_another_protocol(sweep, tmp_path):
    # The smoke suite's 100-step episodes are not the DMC protocol the TD-MPC2 curves were measured on.
    done = run_cli("report", str(sweep), "--out", str(tmp_path / "r"), "--reps", "200", "--reference", "tdmpc2-csv")
    assert done.returncode == 0, done.stderr
    assert "left off cartpole-swingup, whose episodes (100 steps" in done.stderr
    assert "ref: tdmpc2" not in (tmp_path / "r" / "report.md").read_text().split("## Protocol")[0]


# -- training curves --------------------------------------------------------------------------
def logged(agent_file: str, planner: str, until: int) -> dict[int, float]:
    """step -> the planner's evaluation return in a shipped agent's training log, read directly."""
    log = REPO / "checkpoints" / "tdmpc2" / "dmc" / agent_file
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return {r["step"]: r[planner] for r in records if r["type"] == "eval" and r["step"] <= until}


def test_training_curves_of_the_shipped_agents_sit_beside_the_official_curve(demo_policy, tmp_path):
    out = tmp_path / "report"
    done = run_cli("report", str(demo_policy), "--reps", "200", "--format", "md,csv", "--reference", "tdmpc2-csv",
                   "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out / "training_curves.csv")
    acrobot = logged("acrobot-swingup-1.log.jsonl", "dream_mpc", 185_000)  # shipped at 185k (manifest)
    sparse = logged("cartpole-swingup_sparse-1.log.jsonl", "dream_mpc", 115_000)  # its log runs on to 125k
    assert len(acrobot) >= 8 and max(sparse) == 100_000
    rows = table[table["task_id"] == "acrobot-swingup"].set_index("step")
    assert list(rows.index) == sorted(acrobot) and np.allclose(rows["dream_mpc"], [acrobot[k] for k in rows.index])
    assert list(table.loc[table["task_id"] == "cartpole-swingup_sparse", "step"]) == sorted(sparse)
    # The official size-5 curve where it publishes a point (every 100k): 3 seeds, mean 179.1 at 100k.
    at_100k = rows.loc[100_000]
    assert at_100k["official_seeds"] == 3 and at_100k["official_mean"] == pytest.approx(179.1, abs=0.05)
    assert at_100k["official_min"] < at_100k["official_mean"] < at_100k["official_max"]
    assert rows.loc[25_000, "official_seeds"] == 0 and np.isnan(rows.loc[25_000, "official_mean"])
    text = (out / "report.md").read_text()
    start = "| tdmpc2 acrobot-swingup-1.pt | acrobot-swingup | 100,000 |"
    line = next(x for x in text.splitlines() if x.startswith(start))
    assert line.endswith(f"| {at_100k['official_mean']:.1f} [{at_100k['official_min']:.1f}, "
                         f"{at_100k['official_max']:.1f}] (3) |")  # fmt: skip
    assert "published curve (ref: tdmpc2 csv)" in text and (out / "figures" / "training_curves.png").is_file()

    # Results carried from another machine: the checkpoint path is gone, the sha256 finds the shipped log;
    # a checkpoint nobody logged is named in a warning.
    moved = tmp_path / "moved"
    for path in demo_policy.rglob("seed-*.jsonl"):
        lines = path.read_text().splitlines()
        header = json.loads(lines[0])
        header["checkpoint"] = "/elsewhere/" + Path(header["checkpoint"]).name
        if header["task"] == "cartpole-swingup_sparse":
            header["checkpoint_sha256"] = "0" * 64
        target = moved / path.relative_to(demo_policy)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    done = run_cli("report", str(moved), "--reps", "200", "--format", "csv", "--out", str(tmp_path / "r2"))
    assert done.returncode == 0, done.stderr
    carried = pd.read_csv(tmp_path / "r2" / "training_curves.csv")
    assert set(carried["task_id"]) == {"acrobot-swingup"} and len(carried) == len(acrobot)
    assert "official_mean" not in carried.columns  # no --reference: the agents' curves alone
    assert "no training log (.log.jsonl written by benchctl train) for tdmpc2 cartpole-swingup_sparse-1.pt" in (
        " ".join(done.stderr.split())
    )


def test_sweep_takes_evals_precision_and_pixel_options(tmp_path):
    """`sweep` runs its cells as `eval` would: --dtype bfloat16 makes its own run with the dtype in
    every header; --no-augment is accepted (state agents record no shift); a bad dtype is one line.
    On a CPU without bfloat16 matrix instructions (torch emulates them) the user is warned, and every
    header says whether the CPU has them."""
    out = tmp_path / "results"
    grid = ["--grid", "dream_mpc.horizon=1,2", "--dtype", "bfloat16", "--no-augment"]
    done = run_cli("sweep", *SMOKE, "--tasks", "cartpole-swingup", "--planner", "dream_mpc", *grid, "--out", str(out))
    assert done.returncode == 0, done.stderr
    found = cells(out)
    assert len(found) == 2 and {h["planner_config"]["horizon"] for h, _ in found} == {1, 2}
    assert all(h["dtype"] == "bfloat16" and h["augment"] is None and len(e) == 1 for h, e in found)
    assert {p.relative_to(out).parts[0] for p in out.rglob("seed-*.jsonl")} == {"sweep-tdmpc2-bfloat16"}
    emulated = machine.bfloat16_units() is False
    assert ("has no bfloat16 matrix instructions" in " ".join(done.stderr.split())) == emulated
    assert all(h["machine"]["bfloat16_units"] is not emulated for h, _ in found)
    bad = run_cli("sweep", *SMOKE, "--grid", "dream_mpc.horizon=1,2", "--dtype", "float16", "--out", str(out))
    assert bad.returncode == 2 and bad.stderr.strip().endswith("--dtype float16: choose float32 or bfloat16")
