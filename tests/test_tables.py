"""reda_jax.report.runs / tables / paper_results (experiments.tables): the paper's numbers,
pooling of fake run directories over base seeds, the table layouts and the CSV files."""
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from reda_jax.report import paper_results as paper
from reda_jax.report import runs, tables

TRAIN = ("gravity_x0.5", "gravity_x1.0", "gravity_x1.5")
UNSEEN = ("gravity_x0.8", "gravity_x1.2")


def _summary(task_returns: dict) -> dict:
    """protocols.summarize's format from {task: per-seed returns}."""
    names = list(task_returns)
    m = np.asarray([task_returns[n] for n in names], np.float64).T  # (S, T)

    def stats(v):
        return {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_seed": list(map(float, v))}

    out = {"tasks": {n: {**stats(m[:, i]), "mean_length": 1000.0} for i, n in enumerate(names)},
           "all_tasks": stats(m.mean(axis=1))}
    tr = [i for i, n in enumerate(names) if n in TRAIN]
    un = [i for i, n in enumerate(names) if n not in TRAIN]
    out["train_tasks"] = stats(m[:, tr].mean(axis=1))
    out["unseen_tasks"] = stats(m[:, un].mean(axis=1))
    out["mean_return"], out["std_return"] = out["all_tasks"]["mean"], out["all_tasks"]["std"]
    return out


def make_run(path: Path, task_set="hopper-gravity", k=1, method="reda", seed=0,
             on=(100.0, 200.0), off=None, num_models=3, write_method=True, extra_cfg=None,
             collection=None):
    """A fake run directory whose every task returns on[s] (on-policy) / off[s] in seed s."""
    off = off if off is not None else tuple(v / 2 for v in on)
    algo = method.split("_wo_")[0] if "_wo_" in method else method
    rep = {"augmentation": {"reda_wo_model": "none", "reda_wo_adv": "random"}.get(
        method, "adversarial"), "lambda1": 0.0 if method == "reda_wo_up" else 1.0,
        "lambda2": 0.0 if method == "reda_wo_tc" else 1.0}
    train_cfg = {"task_set": task_set, "num_checkpoints": k, "algo": algo, "seed": seed,
                 "num_seeds": len(on), "dynamics": {"num_models": num_models},
                 "representation": rep, **(extra_cfg or {})}
    tasks = TRAIN + UNSEEN

    def summ(vals):
        return _summary({t: list(vals) for t in tasks})

    results = {"algo": algo, "task_set": task_set, "num_checkpoints": k,
               "num_seeds": len(on), "epoch": 10,
               "protocols": {"on_policy": summ(on), "off_policy": summ(off)},
               "encoder_accuracy": {}, "timing_s": {}}
    if write_method:
        results.update(method=method, num_models=num_models)
    if collection is not None:
        results["collection_seed"] = collection
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"train": train_cfg, "data_dir": "x"}))
    (path / "results.json").write_text(json.dumps(results))
    return path


def test_paper_numbers_looked_up():
    assert paper.row_name("hopper-gravity", 1) == "Hopper Gravity-1"
    assert paper.row_name("walker2d-damping", 3) == "Walker2d Dof-Damping-3"
    assert paper.parse_row_name("Walker2d DofDamp-5") == ("walker2d-damping", 5)
    c = paper.lookup("table1", "Hopper Gravity-1", "reda")
    assert (c.mean, c.std) == (2069.6, 436.5)
    c = paper.lookup("table2", "HalfCheetah Gravity-5", "om_bc")
    assert (c.mean, c.std) == (3006.2, 684.3)
    assert paper.lookup("table3", "Walker2d Dof-Damping-1", "reda_wo_adv") == paper.PaperCell(3186.2)
    assert paper.lookup("table4", "Walker2d Gravity-5", "reda_wo_tc").mean == 2212.5
    assert paper.lookup("table5", "Walker2d Gravity-1", 1, "on_policy").mean == 1466.8
    assert paper.lookup("table5", "Walker2d Gravity-1", "5", "off_policy").mean == 1376.5
    assert paper.lookup("table1", "Hopper Gravity-1", "reda_wo_tc") is None
    assert paper.lookup("table3", "Hopper Gravity-1", "reda") is None


def test_paper_tables_are_complete_and_consistent():
    for name in ("table1", "table2"):
        t = paper.TABLES[name]
        assert len(t.cells) == 21 and set(t.rows) == {
            paper.row_name(ts, k) for ts in paper.PAPER_TASK_SETS for k in (1, 3, 5)}
        # The printed Average is the plain mean of the 21 rows (PromptDT on-policy: 2204.21
        # vs. printed 2204.3, the paper averaged unrounded numbers).
        for m in t.columns:
            assert np.mean([c[m].mean for c in t.cells.values()]) == pytest.approx(
                t.average[m], abs=0.1)
    # Tables 3-4 are off-policy: their ReDA means are Table 2's; Table 5's 3 models = ReDA.
    for name in ("table3", "table4"):
        for row in paper.TABLES[name].rows:
            assert paper.lookup(name, row, "reda").mean == paper.lookup("table2", row, "reda").mean
    for p in ("on_policy", "off_policy"):
        t = "table1" if p == "on_policy" else "table2"
        assert paper.lookup("table5", "Walker2d Gravity-1", 3, p).mean == paper.lookup(
            t, "Walker2d Gravity-1", "reda").mean


def test_pooling_over_two_run_dirs(tmp_path):
    make_run(tmp_path / "a" / "seed0", seed=0, on=(100.0, 200.0), off=(10.0, 30.0))
    make_run(tmp_path / "b" / "seed1", seed=1, on=(400.0,), off=(50.0,), write_method=False)
    make_run(tmp_path / "c", seed=1, on=(999.0,))  # repeats base seed 1: ignored
    make_run(tmp_path / "d", method="om_sac", on=(7.0, 9.0))
    warnings = []
    groups = runs.group_runs(runs.find_runs(tmp_path), warnings.append)
    assert set(groups) == {("hopper-gravity", 1, "reda", 3), ("hopper-gravity", 1, "om_sac", 3)}
    g = groups[("hopper-gravity", 1, "reda", 3)]
    assert len(g.runs) == 2 and any("repeats base seed 1" in w for w in warnings)
    np.testing.assert_allclose(g.per_seed("on_policy"), [100.0, 200.0, 400.0])
    s = tables.Stat.of(g.per_seed("on_policy"))
    # Hand computation: mean 700/3; population std sqrt(((-400/3)^2 + (-100/3)^2 + (500/3)^2)/3).
    assert s.n == 3 and s.mean == pytest.approx(233.3333333)
    assert s.std == pytest.approx(np.sqrt((160000 + 10000 + 250000) / 27))
    s = tables.Stat.of(g.per_seed("off_policy"))
    assert (s.mean, s.n) == (pytest.approx(30.0), 3)
    assert s.std == pytest.approx(np.sqrt((400 + 0 + 400) / 3))
    np.testing.assert_allclose(g.per_task("on_policy", "gravity_x0.8"), [100.0, 200.0, 400.0])


def test_runs_on_two_collections_pool_with_an_interval(tmp_path):
    # Base seed 0 on collections 0 and 1: independent data, so both are kept (a third run
    # repeating seed 0 on collection 1 is not).
    make_run(tmp_path / "c0", seed=0, on=(100.0, 200.0), collection=0)
    make_run(tmp_path / "c1", seed=0, on=(300.0, 400.0), collection=1)
    make_run(tmp_path / "c1-again", seed=0, on=(999.0,), collection=1)
    warnings = []
    groups = runs.group_runs(runs.find_runs(tmp_path), warnings.append)
    g = groups[("hopper-gravity", 1, "reda", 3)]
    assert g.collections == [0, 1] and len(g.runs) == 2
    assert len(warnings) == 1 and "seed 0 on collection 1" in warnings[0]
    s = tables.Stat.of(g.per_seed("on_policy"))
    # Hand computation: 100..400, mean 250, sample std sqrt(50000/3) = 129.10; t(3) 3.1824:
    # half-width 3.1824 * 129.10 / 2 = 205.4.
    assert (s.mean, s.n) == (250.0, 4)
    assert (s.lo, s.hi) == (pytest.approx(44.6, abs=0.1), pytest.approx(455.4, abs=0.1))
    md = tables.runs_summary(groups, tmp_path)
    # Each collection's mean (on- / off-policy; off = on / 2 in make_run).
    assert "| hopper-gravity | 1 | reda | 3 | 4 | 0: 150.0 / 75.0; 1: 350.0 / 175.0 |" in md
    one = tables.Stat.of([5.0])
    assert one.n == 1 and np.isnan(one.lo) and tables._fmt_ours(one) == "5.0 ± 0.0 (1)"


def test_method_derived_from_config_for_old_results(tmp_path):
    for m in ("reda_wo_model", "reda_wo_adv", "reda_wo_up", "reda_wo_tc", "reda"):
        make_run(tmp_path / m, method=m, write_method=False)
    assert {r.method for r in runs.find_runs(tmp_path)} == {
        "reda_wo_model", "reda_wo_adv", "reda_wo_up", "reda_wo_tc", "reda"}


def test_config_difference_warns(tmp_path):
    make_run(tmp_path / "a", seed=0)
    make_run(tmp_path / "b", seed=1, extra_cfg={"data_preset": "mini"})
    warnings = []
    runs.group_runs(runs.find_runs(tmp_path), warnings.append)
    assert len(warnings) == 1 and "data_preset" in warnings[0]


@pytest.fixture
def sweep_dir(tmp_path):
    root = tmp_path / "runs"
    make_run(root / "hopper-gravity/reda/s0", seed=0, on=(1000.0, 3000.0), off=(500.0, 700.0))
    make_run(root / "hopper-gravity/reda/s1", seed=1, on=(2000.0,), off=(600.0,))
    make_run(root / "hopper-gravity/om_sac/s0", method="om_sac", on=(1000.0,), off=(100.0,))
    make_run(root / "hopper-gravity/oracle/s0", method="oracle", on=(2500.0,), off=(2400.0,))
    make_run(root / "walker2d-gravity/reda_wo_adv/s0", "walker2d-gravity", method="reda_wo_adv",
             on=(10.0,), off=(20.0,))
    make_run(root / "walker2d-gravity/reda/m1", "walker2d-gravity", num_models=1,
             on=(30.0,), off=(40.0,))
    return root


def test_table_layouts(sweep_dir):
    groups = runs.group_runs(runs.find_runs(sweep_dir))
    t1, t2, t3, t4, t5 = tables.build_tables(groups)
    assert [r.label for r in t1.rows] == ["Hopper Gravity-1"]  # rows only for runs present
    row = t1.rows[0]
    assert (row.ours["reda"].mean, row.ours["reda"].n) == (2000.0, 3)
    assert row.ours["reda"].std == pytest.approx(np.sqrt(2e6 / 3))
    assert row.ours["focal"] is None
    assert (row.paper["reda"].mean, row.paper["reda"].std) == (2069.6, 436.5)
    assert t2.rows[0].ours["reda"].mean == pytest.approx(600.0)
    assert t2.rows[0].paper["reda"].mean == 1674.5
    # Average: our mean of row means, the paper's over the same rows.
    avg = t1.averages()
    assert avg["reda"] == (2000.0, 2069.6, 1) and avg["focal"] == (None, None, 0)
    assert [r.label for r in t3.rows] == ["Walker2d Gravity-1"] and t3.rows[0].protocol == "off_policy"
    assert t3.rows[0].ours["reda_wo_adv"].mean == 20.0 and t3.rows[0].ours["reda"] is None
    assert t3.rows[0].paper["reda_wo_adv"].mean == 1197.5
    assert t4.rows == []  # no w/o UP / w/o TC runs (a ReDA run alone makes no ablation row)
    assert [r.label for r in t5.rows] == ["Walker2d Gravity-1 (on-policy)",
                                          "Walker2d Gravity-1 (off-policy)"]
    assert t5.rows[0].ours["1"].mean == 30.0 and t5.rows[1].ours["1"].mean == 40.0
    assert t5.rows[0].paper["1"].mean == 1466.8 and t5.rows[1].paper["5"].mean == 1376.5
    md = tables.format_markdown(t1)
    assert "| Hopper Gravity-1 | " in md
    # 1000, 3000, 2000: sample std 1000, t(2) 4.3027: half-width 4302.7 / sqrt(3) = 2484.1.
    assert "2000.0 ± 816.5 [-484.1, 4484.1] (3) / 2069.6 ± 436.5" in md
    assert "| Average | " in md and "Protocol: on-policy" in md
    assert "off-policy" in tables.format_markdown(t3)
    # The sanity floor and ceiling flank the paper's methods, with no paper number.
    assert t1.columns[0] == "bc" and t1.columns[-1] == "oracle" and "reda" in t1.columns
    assert row.ours["oracle"].mean == 2500.0 and row.paper["oracle"] is None
    assert row.ours["bc"] is None
    assert "| BC (ours / paper) |" in md and "2500.0 ± 0.0 (1) / –" in md
    assert "(no runs for this table)" in tables.format_markdown(t4)
    md5 = tables.format_markdown(t5)
    assert "| Average (on-policy) | 30.0 [1 row] / 1466.8 |" in md5
    assert "| Average (off-policy) | 40.0 [1 row] / 1254.5 |" in md5


def test_report_writes_markdown_and_csv(sweep_dir, tmp_path):
    out = tmp_path / "out"
    printed = []
    tables.make_report(sweep_dir, out, "both", echo=printed.append)
    assert "### Table 1" in printed[0] and "### Table 5" in printed[0]
    names = {p.name for p in out.iterdir()}
    assert {"tables.md", "table1.csv", "table2.csv", "table3.csv", "table4.csv", "table5.csv",
            "per_task.md", "per_task.csv"} <= names
    rows = list(csv.DictReader(io.StringIO((out / "table1.csv").read_text())))
    reda = [r for r in rows if r["row"] == "Hopper Gravity-1" and r["column"] == "reda"][0]
    assert reda["protocol"] == "on_policy" and reda["task_set"] == "hopper-gravity"
    assert float(reda["ours_mean"]) == 2000.0 and reda["num_seeds"] == "3"
    assert float(reda["ours_ci_hi"]) == pytest.approx(4484.1, abs=0.1)
    assert float(reda["paper_mean"]) == 2069.6 and float(reda["paper_std"]) == 436.5
    focal = [r for r in rows if r["row"] == "Hopper Gravity-1" and r["column"] == "focal"][0]
    assert focal["ours_mean"] == "" and float(focal["paper_mean"]) == 1148.6
    avg = [r for r in rows if r["row"] == "Average" and r["column"] == "om_sac"][0]
    assert float(avg["ours_mean"]) == 1000.0 and avg["num_rows"] == "1"
    assert float(avg["paper_mean"]) == 1453.6
    t5 = list(csv.DictReader(io.StringIO((out / "table5.csv").read_text())))
    assert {r["protocol"] for r in t5} == {"on_policy", "off_policy"}
    per_task = (out / "per_task.md").read_text()
    assert "gravity_x0.8 (unseen)" in per_task and "unseen tasks (avg)" in per_task
    # --format=csv writes no markdown
    out2 = tmp_path / "out2"
    tables.make_report(sweep_dir, out2, "csv", per_task=False, echo=lambda *_: None)
    assert {p.name for p in out2.iterdir()} == {f"table{i}.csv" for i in range(1, 6)}


def test_cli(sweep_dir, tmp_path):
    import subprocess
    import sys
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "experiments.tables", f"--runs={sweep_dir}",
                        f"--out={out}", "--format=markdown"], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stderr
    assert "Hopper Gravity-1" in r.stdout and (out / "tables.md").exists()
    r = subprocess.run([sys.executable, "-m", "experiments.tables", f"--runs={tmp_path / 'none'}"],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode != 0 and "no results.json" in r.stderr


def test_archive_prints_the_same_tables_without_the_runs(tmp_path):
    """--archive copies each run's results.json and config.json (not its checkpoints) under
    <out>/runs; the tables read from the archive are the original tables, byte for byte; an
    --out inside --runs is refused before anything is written."""
    src = tmp_path / "runs"
    make_run(src / "reda" / "a", on=(100.0, 300.0), collection=0)
    make_run(src / "reda" / "b", on=(200.0, 250.0), collection=1)
    make_run(src / "om_sac" / "a", method="om_sac", on=(50.0, 70.0), collection=0)
    (src / "reda" / "a" / "checkpoints").mkdir()
    (src / "reda" / "a" / "checkpoints" / "big.bin").write_bytes(b"\0" * 1000)
    out = tmp_path / "report"
    tables.make_report(src, out, "csv", per_task=False, echo=lambda *_: None, archive=True)
    copied = sorted(p.relative_to(out / "runs").as_posix() for p in (out / "runs").rglob("*")
                    if p.is_file())
    assert copied == [f"{d}/{f}" for d in ("om_sac/a", "reda/a", "reda/b")
                      for f in ("config.json", "results.json")]
    again = tmp_path / "again"
    tables.make_report(out / "runs", again, "csv", per_task=False, echo=lambda *_: None)
    for name in ("table1.csv", "table2.csv"):
        assert (again / name).read_text() == (out / name).read_text()
    rows = {r["column"]: r for r in csv.DictReader(io.StringIO((out / "table1.csv").read_text()))
            if r["row"] == "Hopper Gravity-1"}
    assert float(rows["reda"]["ours_mean"]) == 212.5 and rows["reda"]["num_seeds"] == "4"
    assert float(rows["om_sac"]["ours_mean"]) == 60.0     # its own runs only
    from reda_jax.validate import InputError
    with pytest.raises(InputError, match="--archive: .*inside"):
        tables.make_report(src, src / "tables", "csv", echo=lambda *_: None, archive=True)
    assert not (src / "tables").exists()


def test_archived_runs_under_docs_are_not_git_ignored():
    """`--archive` writes <out>/runs/...; an unanchored `runs/` in .gitignore once hid every
    archive from git, so the committed tables lost their inputs."""
    import shutil
    import subprocess
    repo = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    check = lambda p: subprocess.run(["git", "-C", str(repo), "check-ignore", "-q", p]).returncode
    assert check("docs/some_tables/runs/reda/mini-ckpt1-seed0/results.json") == 1   # kept
    assert check("runs/hopper-gravity/reda/mini-ckpt1-seed0/results.json") == 0       # ignored


def test_a_run_with_non_finite_returns_is_named_and_left_out_of_pooled_cells(tmp_path):
    from reda_jax.report.runs import find_runs, group_runs
    make_run(tmp_path / "good", seed=0, on=(100.0, 200.0))
    make_run(tmp_path / "nan", seed=1, on=(float("nan"), float("nan")))
    warnings = []
    runs = find_runs(tmp_path, warnings.append)
    assert [r.path.name for r in runs] == ["good"]
    assert len(warnings) == 1 and "nan" in warnings[0] and "non-finite returns" in warnings[0]
    assert "on_policy seed 0" in warnings[0]
    (group,) = group_runs(runs).values()
    np.testing.assert_allclose(group.per_seed("on_policy"), [100.0, 200.0])
