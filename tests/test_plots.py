"""reda_jax.report.plots and experiments.plots: the 95% t-interval against a hand computation,
curves from eval_history.jsonl, the t-SNE coordinates / styles and the PNG files (skipped
without the `viz` extra)."""
import json
import math

import numpy as np
import pytest

from reda_jax.report import plots
from tests.test_tables import TRAIN, UNSEEN, _summary, make_run


def test_t_interval_by_hand():
    v = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    mean, lo, hi = plots.mean_interval(v)
    # s = sqrt(2.5), t_{0.975, 4} = 2.7764 (table), half width = 2.7764 * sqrt(2.5) / sqrt(5)
    half = 2.7764 * math.sqrt(2.5) / math.sqrt(5)
    assert mean == 3.0
    assert lo == pytest.approx(3.0 - half, abs=1e-3) and hi == pytest.approx(3.0 + half, abs=1e-3)
    # per epoch (E, S): the interval is over the last axis; 1 seed -> no interval
    m, lo, hi = plots.mean_interval(np.array([[0.0, 2.0], [1.0, 1.0]]))
    half = 12.7062 * math.sqrt(2.0) / math.sqrt(2)
    np.testing.assert_allclose(m, [1.0, 1.0])
    np.testing.assert_allclose(lo, [1.0 - half, 1.0], atol=1e-3)
    np.testing.assert_allclose(hi, [1.0 + half, 1.0], atol=1e-3)
    m, lo, hi = plots.mean_interval(np.array([[7.0]]))
    assert m[0] == 7.0 and np.isnan(lo[0]) and np.isnan(hi[0])


def test_t_table_matches_scipy():
    for df in (1, 2, 4, 9, 29, 30):
        assert plots.t_critical(df, use_scipy=False) == plots._T975[df]
    assert plots.t_critical(1000, use_scipy=False) == pytest.approx(1.9623, abs=2e-3)
    assert plots.t_critical(45, use_scipy=False) == pytest.approx(2.0141, abs=2e-3)
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 3, 7, 35, 50, 100, 500):
        assert plots.t_critical(df, use_scipy=False) == pytest.approx(
            stats.t.ppf(0.975, df), abs=2e-3)
        assert plots.t_critical(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-9)


def _history(path, seeds_offset=0.0, epochs=(10, 20, 30), num_seeds=2):
    with open(path, "w") as f:
        for e in epochs:
            rets = {t: [e + seeds_offset + s for s in range(num_seeds)] for t in TRAIN + UNSEEN}
            f.write(json.dumps({"epoch": e, "on_policy": _summary(rets),
                                "off_policy": _summary(rets)}) + "\n")


def test_curves_from_history(tmp_path):
    _history(tmp_path / "a.jsonl")
    with open(tmp_path / "a.jsonl", "a") as f:  # a resumed run re-evaluated epoch 30
        rets = {t: [100.0, 101.0] for t in TRAIN + UNSEEN}
        f.write(json.dumps({"epoch": 30, "on_policy": _summary(rets),
                            "off_policy": _summary(rets)}) + "\n")
    h = plots.load_history(tmp_path / "a.jsonl")
    assert [r["epoch"] for r in h] == [10, 20, 30]
    epochs, v = plots.curve(h, "on_policy", "gravity_x0.8")
    np.testing.assert_array_equal(epochs, [10, 20, 30])
    np.testing.assert_allclose(v, [[10, 11], [20, 21], [100, 101]])
    _, v = plots.curve(h, "off_policy", "unseen_tasks")
    assert v.shape == (3, 2)
    _history(tmp_path / "b.jsonl", seeds_offset=0.5, epochs=(10, 20), num_seeds=1)
    epochs, v = plots.pool_curves([plots.curve(plots.load_history(tmp_path / n), "on_policy",
                                               "gravity_x0.5") for n in ("a.jsonl", "b.jsonl")])
    np.testing.assert_array_equal(epochs, [10, 20])
    np.testing.assert_allclose(v, [[10, 11, 10.5], [20, 21, 20.5]])


def test_task_styles_and_points():
    names = list(TRAIN + UNSEEN)
    styles = plots.task_styles(names, [True, True, True, False, False])
    assert [s["label"] for s in styles] == ["gravity ×0.5", "gravity ×1.0", "gravity ×1.5",
                                            "gravity ×0.8 (unseen)", "gravity ×1.2 (unseen)"]
    assert [s["marker"] for s in styles] == ["o", "o", "o", "^", "^"]
    assert len({s["color"] for s in styles}) == 5
    assert plots.task_label("dof_damping_x1.5") == "dof-damping ×1.5"
    coords = np.arange(2 * 5 * 3 * 2, dtype=float).reshape(2, 5, 3, 2)
    xy, s, t, w = plots.flatten_points(coords)
    assert xy.shape == (30, 2) and len(s) == len(t) == len(w) == 30
    for i in range(30):
        np.testing.assert_array_equal(xy[i], coords[s[i], t[i], w[i]])


def test_tsne_one_point_per_seed_task_window():
    pytest.importorskip("sklearn")
    S, T, n, Z = 2, 3, 6, 4
    z = np.random.default_rng(0).normal(size=(S, T, n, Z)).astype(np.float32)
    c = plots.tsne_coords(z, perplexity=30, max_iter=250)
    assert c.shape == (S, T, n, 2) and np.isfinite(c).all()
    xy, seed, task, window = plots.flatten_points(c)
    assert xy.shape == (S * T * n, 2)
    assert sorted(zip(seed, task, window)) == [(s, t, w) for s in range(S) for t in range(T)
                                              for w in range(n)]


def test_png_files_written(tmp_path):
    pytest.importorskip("matplotlib")
    epochs = np.array([10, 20, 30])
    curves = {"reda": {"a": (epochs, np.array([[1.0, 2.0], [2.0, 3.0], [3.0, 5.0]]))},
              "om_sac": {"a": (epochs, np.array([[1.0], [1.5], [2.0]]))}}
    p = plots.plot_learning_curves(curves, ["a"], tmp_path / "c.png", title="t")
    assert p.exists() and p.stat().st_size > 1000
    coords = np.random.default_rng(0).normal(size=(2, 5, 4, 2))
    p = plots.plot_tsne({"reda": coords, "focal": coords}, list(TRAIN + UNSEEN),
                        [True] * 3 + [False] * 2, tmp_path / "t.png", seed_index=1)
    assert p.exists() and p.stat().st_size > 1000


def test_plots_app(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    from experiments import plots as app
    root = tmp_path / "runs"
    rng = np.random.default_rng(0)
    for method, seed, num_seeds in (("reda", 0, 2), ("reda", 1, 1), ("reda_wo_model", 0, 2)):
        d = make_run(root / "walker2d-gravity" / method / f"s{seed}", "walker2d-gravity",
                     method=method, seed=seed, on=tuple(range(num_seeds)))
        _history(d / "eval_history.jsonl", num_seeds=num_seeds)
        np.savez(d / "embeddings.npz", z=rng.normal(size=(num_seeds, 5, 4, 8)).astype(np.float32),
                 task_names=np.asarray(TRAIN + UNSEEN), train_task=np.asarray([1, 1, 1, 0, 0], bool))
    written = app.make_plots(root, tmp_path / "out", perplexity=5, tsne_max_iter=250,
                             echo=lambda *_: None)
    d = tmp_path / "out" / "walker2d-gravity-ckpt1"
    names = {p.name for p in written}
    assert names == {"tsne.npz", "tsne.png", "curves_on_policy_train.png",
                     "curves_on_policy_unseen.png", "curves_off_policy_train.png",
                     "curves_off_policy_unseen.png"}
    for p in written:
        assert p.parent == d and p.stat().st_size > 0
    with np.load(d / "tsne.npz") as f:
        assert list(f["methods"]) == ["reda", "reda_wo_model"]  # paper order
        assert f["coords_reda"].shape == (3, 5, 4, 2)  # seeds of both runs pooled
        assert f["coords_reda_wo_model"].shape == (2, 5, 4, 2)
        assert list(f["task_names"]) == list(TRAIN + UNSEEN)
    assert app.method_label("reda_wo_model") == "ReDA w/o model"
    assert app.method_label("reda_models5") == "ReDA (5 models)"


def test_report_figures_read_the_archived_tables(tmp_path):
    """experiments.report_figures: the Tables 1-2 bar chart shows the numbers the archived
    tables print (docs/runs/hopper-gravity1-mini-tables), and both figures are drawn."""
    from pathlib import Path
    from experiments.report_figures import didactic_rows, tables12_summary
    root = Path(__file__).resolve().parents[1]
    summary, row = tables12_summary(root / "docs/runs/hopper-gravity1-mini-tables/runs")
    assert row == "Hopper Gravity-1"
    assert list(summary) == ["BC", "OM-BC", "OM-SAC", "CORRO", "FOCAL", "PromptDT", "ReDA",
                             "Oracle"]
    mean, lo, hi = summary["ReDA"]["off_policy"]        # tables.md: 362.4 [311.6, 413.3]
    assert (round(mean, 1), round(lo, 1), round(hi, 1)) == (362.4, 311.6, 413.3)
    mean, lo, hi = summary["OM-BC"]["on_policy"]        # 332.1 [276.3, 387.9]
    assert (round(mean, 1), round(lo, 1), round(hi, 1)) == (332.1, 276.3, 387.9)
    rows, _ = didactic_rows(root / "docs/runs/didactic-figure2/table.json")
    assert plots.cell(rows[0]["task1_return_test_context"])[1] is None   # the behavior row
    assert plots.cell([1.0, 2.0, 3.0]) == pytest.approx(plots.mean_interval([1.0, 2.0, 3.0]))
    pytest.importorskip("matplotlib")
    from reda_jax.report.didactic import METHOD_LABELS
    from reda_jax.report.paper_results import PROTOCOL_LABELS
    assert plots.plot_protocol_bars(summary, PROTOCOL_LABELS, tmp_path / "t.png").stat().st_size
    assert plots.plot_figure2(rows, METHOD_LABELS, tmp_path / "f.png").stat().st_size
