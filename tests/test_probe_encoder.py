"""experiments.probe_encoder end to end on the smoke didactic data."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reda_jax.report.encoder_probe import format_readout, method_config, paired_rows, readout_rows
from reda_jax.envs.tasks import get_task_set
from reda_jax.metrics_log import read_metrics
from reda_jax.validate import InputError

REPO = Path(__file__).resolve().parents[1]


def test_method_names_map_to_algos_and_ablations():
    c = method_config("reda_wo_model", "didactic", "smoke", 2, 1, ())
    assert c.algo == "reda" and c.representation.augmentation == "none"
    c = method_config("reda_wo_up", "didactic", "smoke", 2, 1, ("representation.lambda2=0.5",))
    assert c.representation.lambda1 == 0.0 and c.representation.lambda2 == 0.5
    assert method_config("focal", "hopper-gravity", "mini", 3, 1, ()).num_seeds == 3
    with pytest.raises(InputError, match="oracle"):
        method_config("oracle", "didactic", "smoke", 2, 1, ())


def test_rows_pool_seeds_over_collections():
    rows = readout_rows({"c0": {"reda": {"d_phi": [1.0, 2.0]}},
                         "c1": {"reda": {"d_phi": [3.0, 4.0]}}})
    assert rows == {"reda": {"d_phi": [1.0, 2.0, 3.0, 4.0]}}
    table = format_readout(rows)
    assert "| reda | 2.50 [" in table and table.rstrip().endswith("| 4 |")
    two = format_readout({"reda": {"d_phi": [1.0, 2.0], "model_error": [0.1, 0.3]},
                          "focal": {"d_phi": [1.0, 1.0]}}).split("\n\n")
    assert len(two) == 2 and "model error" in two[1] and "focal" not in two[1]
    assert "model error" not in two[0] and "| focal | 1.00" in two[0]


def test_paired_differences_match_seeds_and_collections():
    ours = {"c0": {"reda": {"acc": [0.5, 0.7]}}, "c1": {"reda": {"acc": [0.4, 0.4]},
                                                       "focal": {"acc": [0.9, 0.9]}}}
    base = {"c0": {"reda": {"acc": [0.3, 0.6]}}, "c1": {"reda": {"acc": [0.4, 0.1]}}}
    rows = paired_rows(ours, base)
    assert list(rows) == ["reda"]             # focal has no base run to pair with
    np.testing.assert_allclose(rows["reda"]["acc"], [0.2, 0.1, 0.0, 0.3])


@pytest.mark.timeout(900)
def test_probe_encoder_app_stops_where_the_encoder_is_final(tmp_path):
    argv = [sys.executable, "-m", "experiments.probe_encoder", "--task_set=didactic",
            "--preset=smoke", "--methods=focal,om_sac", "--num_seeds=2", "--collect_seeds=0",
            f"--workdir={tmp_path / 'probe'}", f"--data_dir={tmp_path / 'data'}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| focal |" in out.stdout and "| om_sac |" in out.stdout
    record = json.loads((tmp_path / "probe" / "didactic" / "readout-default.json").read_text())
    per = record["per_collection"]["collect0"]
    for method in ("focal", "om_sac"):
        assert set(per[method]) == {"train_accuracy", "unseen_checkpoint_accuracy",
                                    "task1_unseen_checkpoint_accuracy",
                                    "linear_probe_accuracy", "d_phi", "d_phi_centroid",
                                    "d_phi_median"}
        for key, values in per[method].items():
            assert len(values) == 2 and all(np.isfinite(values))
            if key.endswith("accuracy"):
                assert all(0.0 <= v <= 1.0 for v in values)
    run = tmp_path / "probe" / "didactic" / "collect0"
    # FOCAL's encoder is final after stage 2: no policy is trained; OM-SAC's trains in
    # stage 3, so its whole run is.
    assert (run / "focal-default" / "checkpoints" / "representation").is_dir()
    assert not (run / "focal-default" / "checkpoints" / "meta_policy").exists()
    assert (run / "om_sac-default" / "checkpoints" / "meta_policy").is_dir()
    # A second call resumes from the finished stages and reads out the same numbers;
    # with --policies it then trains FOCAL's policy on that same encoder and adds Figure
    # 2(a)'s task-1 returns (OM-SAC's finished run is only evaluated).
    again = subprocess.run(argv + ["--policies"], capture_output=True, text=True, timeout=900,
                           cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    record2 = json.loads((tmp_path / "probe" / "didactic" / "readout-default.json").read_text())
    returns = {"return_task1_test_context", "return_task1_train_context",
               "return_task1_on_policy"}
    for method in ("focal", "om_sac"):
        per2 = record2["per_collection"]["collect0"][method]
        assert {k: v for k, v in per2.items() if k in per[method]} == per[method]
        assert returns | {"max_mean_q"} <= set(per2)
        for key in returns:
            assert len(per2[key]) == 2 and all(0.0 < v <= 1000.0 for v in per2[key])
        # The policy's numbers are its own run's: the D1_test-context and on-policy
        # returns are task 1's in that run's results.json, the max Q its metrics.csv's.
        res = json.loads((run / f"{method}-default" / "results.json").read_text())
        task1 = get_task_set("inverted-pendulum-gravity").train_tasks[0].name
        for key, protocol in (("return_task1_test_context", "off_policy"),
                              ("return_task1_on_policy", "on_policy")):
            np.testing.assert_allclose(
                per2[key], res["protocols"][protocol]["tasks"][task1]["per_seed"])
        q = [[float(r["value"]) for r in read_metrics(run / f"{method}-default")
              if r["metric"] == "meta/q" and int(r["seed"]) == s] for s in range(2)]
        np.testing.assert_allclose(per2["max_mean_q"], [max(v) for v in q])
    assert (run / "focal-default" / "checkpoints" / "meta_policy").is_dir()
    assert "task 1, D1_test contexts" in again.stdout
    # Reading out one method again keeps the other's read-out in the variant's file.
    one = subprocess.run([a for a in argv if not a.startswith("--methods")] +
                         ["--methods=focal", "--policies"], capture_output=True, text=True,
                         timeout=900, cwd=REPO)
    assert one.returncode == 0, one.stderr[-3000:]
    record3 = json.loads((tmp_path / "probe" / "didactic" / "readout-default.json").read_text())
    assert record3["per_collection"]["collect0"] == record2["per_collection"]["collect0"]
    assert "keeps the earlier read-out of om_sac" in one.stdout and "| om_sac |" in one.stdout


def test_simulator_branches_are_appended_to_each_training_task():
    from reda_jax.report.encoder_probe import with_simulator_branches
    from reda_jax.envs.tasks import get_task_set
    ts = get_task_set("inverted-pendulum-gravity")
    rng = np.random.default_rng(0)

    def arrays(n):
        obs = rng.normal(scale=0.05, size=(n, 4)).astype(np.float32)
        return {"observations": obs, "actions": np.zeros((n, 1), np.float32),
                "rewards": np.ones(n, np.float32), "next_observations": obs,
                "terminals": np.zeros(n, np.float32), "truncations": np.ones(n, np.float32)}

    train = {t.name: arrays(30) for t in ts.train_tasks}
    out = with_simulator_branches(ts, train, num_branches=5, horizon=3)
    for name, real in train.items():
        np.testing.assert_array_equal(out[name]["observations"][:30], real["observations"])
        extra = len(out[name]["rewards"]) - 30
        assert 5 <= extra <= 15                       # 5 branches of at most 3 steps
        assert out[name]["truncations"][30:].sum() + out[name]["terminals"][30:].sum() == 5
