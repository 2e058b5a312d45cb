"""`benchctl report` on results trees with known scores, checked against rliable itself."""

from __future__ import annotations

import numpy as np
from rliable import library as rly
from rliable import metrics

from benchctl.report.aggregate import numpy_seed, probability_of_improvement
from benchctl.report.load import normalize
from benchctl.report.render import build_report
from benchctl.report.synthetic import write_cell
from tests.conftest import run_cli

TASKS = ["acrobot-swingup", "fish-swim", "hopper-hop", "humanoid-walk"]
PLANNERS = {"policy": 300.0, "mppi": 550.0, "dream_mpc": 600.0}


def known_tree(root, episodes=4):
    """returns[planner][seed][task] = base + 50 * task index + 20 * seed, spread ±10 over episodes."""
    expected = {}
    for planner, base in PLANNERS.items():
        matrix = np.zeros((3, len(TASKS)))
        for s in (1, 2, 3):
            for t, task in enumerate(TASKS):
                mean = base + 50 * t + 20 * s
                returns = [mean - 10, mean + 10] * (episodes // 2)
                write_cell(root, "tdmpc2", "dmc", task, planner, s, returns, latency_ms=1.0 + len(planner))
                matrix[s - 1, t] = mean / 1000
        expected[planner] = matrix
    return expected


def test_point_estimates_equal_rliable_and_cis_reproduce(tmp_path):
    expected = known_tree(tmp_path / "results")
    first = build_report([tmp_path / "results"], tmp_path / "r1", reps=200, seed=3, formats=["csv"])
    second = build_report([tmp_path / "results"], tmp_path / "r2", reps=200, seed=3, formats=["csv"])
    other = build_report([tmp_path / "results"], tmp_path / "r3", reps=200, seed=4, formats=["csv"])
    for planner, x in expected.items():
        want = [
            metrics.aggregate_median(x),
            metrics.aggregate_iqm(x),
            metrics.aggregate_mean(x),
            metrics.aggregate_optimality_gap(x, 1.0),
        ]
        np.testing.assert_allclose(first.aggregates[planner], want, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(first.intervals[planner], second.intervals[planner])
    assert any(not np.array_equal(first.intervals[p], other.intervals[p]) for p in expected)
    assert first.tasks == sorted(TASKS)
    p, ci = first.improvement["dream_mpc > policy"]
    assert p == metrics.probability_of_improvement(expected["dream_mpc"], expected["policy"]) == 1.0
    for pair, (point, interval) in first.improvement.items():
        assert point == second.improvement[pair][0]
        np.testing.assert_array_equal(interval, second.improvement[pair][1])


def test_probability_of_improvement_matches_rliable_within_monte_carlo_error():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0.55, 0.2, (3, 6)), rng.normal(0.5, 0.2, (3, 6))
    point, ci = probability_of_improvement(x, y, reps=2000, seed=0)
    assert point == metrics.probability_of_improvement(x, y)
    with numpy_seed(0):
        _, theirs = rly.get_interval_estimates({"xy": [x, y]}, metrics.probability_of_improvement, reps=2000)
    np.testing.assert_allclose(ci, theirs["xy"][:, 0], atol=0.03)


def test_normalization_kinds():
    returns = np.array([500.0, 1000.0])
    np.testing.assert_allclose(normalize(returns, np.zeros(2), {"kind": "scale", "divisor": 1000}), [0.5, 1.0])
    np.testing.assert_allclose(normalize(returns, np.array([True, False]), {"kind": "success"}), [1.0, 0.0])
    hb = {"kind": "random_target", "random": 10.032, "target": 800.0}
    np.testing.assert_allclose(normalize(returns, np.zeros(2), hb), (returns - 10.032) / (800 - 10.032))


def test_tables_mark_best_bold_and_second_underlined(tmp_path):
    known_tree(tmp_path / "results")
    build_report([tmp_path / "results"], tmp_path / "report", reps=100, formats=["md", "tex"])
    md = (tmp_path / "report" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| acrobot-swingup"))
    # dream_mpc (640 ± 20.0: seeds 620, 640, 660, sample std) best, mppi second, policy plain
    assert "**640.0 ± 20.0**" in row and "<u>590.0 ± 20.0</u>" in row and "| 340.0 ± 20.0 |" in row
    tex = (tmp_path / "report" / "per_task.tex").read_text()
    assert "\\textbf{640.0 $\\pm$ 20.0}" in tex and "\\underline{590.0 $\\pm$ 20.0}" in tex


def test_latency_table_is_split_by_device(tmp_path):
    # One method measured on two machines (their results folders merged in one report): latency is
    # only comparable on one device, so each gets its row; the scores still pool into one method.
    for root, seeds, device, ms in (("a", (1, 2), "EPYC 9454, 1 threads", 10.0), ("b", (3,), "H200", 2.0)):
        for seed in seeds:
            for task in TASKS[:2]:
                write_cell(tmp_path / root, "tdmpc2", "dmc", task, "mppi", seed, [500.0, 520.0], ms, device_name=device)
    report = build_report([tmp_path / "a", tmp_path / "b"], tmp_path / "report", reps=100, formats=["md", "csv"])
    md = (tmp_path / "report" / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| mppi | cpu: ")]
    assert len(rows) == 2
    assert rows[0].startswith("| mppi | cpu: H200 | 2.00 |") and rows[1].startswith(
        "| mppi | cpu: EPYC 9454, 1 threads | 10.00 |"
    )
    assert "| method | device | steady p50 ms |" in md
    assert list(report.aggregates) == ["mppi"]  # one method in the aggregates, over all three seeds


def test_partial_results_mixed_protocols_and_malformed_lines_are_reported(tmp_path):
    root = tmp_path / "results"
    known_tree(root)
    write_cell(root, "tdmpc2", "dmc", "dog-run", "mppi", 1, [100.0, 120.0])  # a task only mppi has
    write_cell(root, "tdmpc2", "dmc", "acrobot-swingup", "smc", 1, [400.0] * 6)  # other episode count
    broken = write_cell(root, "tdmpc2", "dmc", "fish-swim", "smc", 1, [300.0, 310.0, 320.0])
    lines = broken.read_text().splitlines()
    broken.write_text("\n".join([lines[0], lines[1], "{not json", lines[2], lines[3][:20]]))  # malformed + torn
    (tmp_path / "empty").mkdir()
    proc = run_cli("report", str(root), str(tmp_path / "empty"), "--out", str(tmp_path / "report"), "--reps", "100")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in (
        "skipped malformed line 3",
        "torn last line",
        "no results",
        "mixed protocols: smc",
        "partial: smc lacks task(s)",
        "dog-run",
    ):
        assert needle in proc.stderr, needle
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Warnings" in md and "skipped malformed line 3" in md
    assert "aggregates cover**: 0 task" not in md
    # smc has only 2 tasks, so the shared tasks are those two; the protocol says which
    assert "aggregates cover**: 2 task(s) every method has: acrobot-swingup, fish-swim" in md


def test_no_results_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli("report", str(tmp_path / "empty"), "--out", str(tmp_path / "report"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no benchctl results found" in proc.stderr
    proc = run_cli("report", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "no such results folder" in proc.stderr
    proc = run_cli("report", str(tmp_path / "empty"), "--format", "docx")
    assert proc.returncode == 2 and "--format docx" in proc.stderr


def test_html_report_renders_every_figure_in_headless_chromium(tmp_path, chromium):
    from selenium import webdriver

    known_tree(tmp_path / "results")
    report = build_report([tmp_path / "results"], tmp_path / "report", reps=100, formats=["html"])
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium[0])
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=str(chromium[1]))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get((report.out / "report.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]);"
        )
    finally:
        driver.quit()
    assert len(images) == 5  # aggregates, profiles, per task, frontier, probability of improvement
    for alt, complete, width, height in images:
        assert complete and width > 100 and height > 100, alt


def test_model_exploitation_is_realized_minus_predicted_h_step_return(tmp_path):
    from benchctl.report.exploitation import episode_differences

    diffs = episode_differences([1.0, 2.0, 3.0, 4.0], [0.5, 1.0, None, 9.0], horizon=2, discount=0.5)
    np.testing.assert_allclose(diffs, [2.0 - 0.5, 3.5 - 1.0, np.nan])  # A_t = r_t + 0.5 r_{t+1}
    root = tmp_path / "results"
    known_tree(root)
    for seed in (1, 2, 3):
        write_cell(
            root,
            "tdmpc2",
            "dmc",
            "acrobot-swingup",
            "dream_mpc",
            seed,
            [3.0],
            config={"horizon": 2},
            step_rewards=[1.0, 1.0, 1.0],
            predicted_rewards=[1.0, 2.0, 0.0],
        )
    report = build_report([root], tmp_path / "report", reps=100, formats=["csv", "md"])
    table = __import__("pandas").read_csv(tmp_path / "report" / "exploitation.csv")
    gamma = 0.99  # the synthetic header's discount
    np.testing.assert_allclose(table["mean"], [1 + gamma - 1.0, 1 + gamma - 2.0])
    assert "Model exploitation" in (tmp_path / "report" / "report.md").read_text()
    assert any("exploitation" in str(f) for f in report.files)
