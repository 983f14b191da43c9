"""The prepared accelerator run, at tiny sizes on the CPU (so it cannot rot), and its
projection arithmetic."""
import json
import os
import subprocess
import sys

import pytest

from experiments import device_check
from reda_jax.presets import collect_preset, train_preset
from reda_jax.envs.tasks import get_task_set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_projection_scales_measured_epochs_to_the_presets_update_counts():
    ts = get_task_set("hopper-gravity")
    sizes = device_check.PAPER
    rows = [{"stage": "dynamics epoch", "seeds": 5, "s_median": 1.0},
            {"stage": "representation epoch", "seeds": 5, "s_median": 2.0},
            {"stage": "meta-policy epoch", "seeds": 5, "s_median": 0.5},
            {"stage": "meta-policy epoch", "seeds": 1, "s_median": 99.0}]   # ignored: 1 seed
    proj = device_check.project(sizes, ts, rows, {"updates_per_s": 100.0}, 1000.0, 5000.0)
    cfg, ccfg = train_preset("paper", ts.name), collect_preset("paper")
    rc = cfg.representation
    assert proj["stage 3 (meta-policy)"]["s"] == pytest.approx(
        0.5 * cfg.meta.updates_per_epoch / sizes.meta_updates * cfg.meta.num_epochs)
    assert proj["stage 2 (representation)"]["s"] == pytest.approx(
        2.0 * (rc.encoder_updates + rc.adversary_updates)
        / (sizes.encoder_updates + sizes.adversary_updates) * rc.num_epochs)
    rollout = sum(ccfg.transitions_per_checkpoint().values())
    assert proj["collection"]["s"] == pytest.approx(
        ccfg.total_steps * (1 / 100 + 1 / 1000) + rollout / 1000)
    # 20 evaluations (every 50 of 1000 epochs; the last is one of them) x 2 protocols x 5 seeds
    # x 5 tasks x 5 episodes x 1000 steps at 5000 steps/s.
    assert proj["stage 3 evaluations"]["s"] == pytest.approx(20 * 2 * 5 * 5 * 5 * 1000 / 5000)
    assert proj["stage 1 (dynamics, max_epochs)"]["s"] > cfg.dynamics.max_epochs * 1.0
    assert proj["total"]["s"] == pytest.approx(sum(v["s"] for k, v in proj.items()
                                                   if k != "total"))


@pytest.mark.timeout(1500)
def test_device_check_tiny_runs_on_cpu_and_writes_its_summary(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, JAX_PLATFORMS="cpu")
    out = subprocess.run(["bash", os.path.join(ROOT, "launch", "device_check.sh"), "--tiny",
                          f"--out={tmp_path}", "--budget_s=1e9", "--repeats=1"], env=env,
                         capture_output=True, text=True, timeout=1490, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    report = json.load(open(tmp_path / "device_check.json"))
    md = open(tmp_path / "device_check.md").read()
    assert {(r["stage"], r["seeds"]) for r in report["stages"]} == {
        (s, n) for s in ("dynamics epoch", "representation epoch", "meta-policy epoch")
        for n in (2,)}
    ceiling = report["peak"]["ceiling_gflops"]
    for r in report["stages"] + [report["peak"]]:
        assert 0 < r["gflops_max"] <= ceiling and r["s_min"] <= r["s_median"] <= r["s_max"]
    assert report["e2e"] is not None and report["eval"]["env_steps"] > 0
    for stage in ("collection", "stage 1 (dynamics, max_epochs)", "stage 2 (representation)",
                  "stage 3 (meta-policy)", "stage 3 evaluations"):
        assert report["projection"][stage]["s"] > 0, stage
    assert "projection" in md and "Theoretical ceiling" in md
