"""The training loop and app: end to end on smoke data, exact resume, reuse of stages,
the NaN guard and the error messages."""
import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from reda_jax import configs, presets
from reda_jax.experiment import build_config, load_or_collect
from reda_jax.envs.tasks import get_task_set
from reda_jax.methods import make_method
from reda_jax.metrics_log import read_metrics
from reda_jax.run_info import prepare_run_dir
from reda_jax.data.train_data import make_train_data
from reda_jax.stage_loop import NonFiniteError, Preempted, check_finite, seed_keys
from reda_jax.train import Trainer

TASK_SET = "hopper-gravity"
SMOKE_PINS = json.loads((Path(__file__).parent / "data" / "smoke_pins.json").read_text())["pins"]


def assert_smoke_pins(algo: str, workdir) -> None:
    """The losses of every stage's first epoch (seed 0) of `algo`'s smoke run against the
    values recorded before the method-registry refactor (commit 36bebd0,
    tests/data/smoke_pins.json). A changed key schedule, batch, wiring or loss moves them by
    far more than the 2% allowed for floating-point differences between CPUs."""
    got = {f"{r['stage']}:{r['metric']}": float(r["value"]) for r in read_metrics(workdir)
           if int(r["epoch"]) == 1 and int(r["seed"]) == 0}
    want = SMOKE_PINS[algo]
    assert set(want) <= set(got), sorted(set(want) - set(got))
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=2e-2,
                               atol=1e-4, err_msg=f"{algo}: {list(want)}")


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return load_or_collect(TASK_SET, "smoke", 1, str(root))


def _trainer(smoke_data, workdir, **kw):
    config = build_config(TASK_SET, "smoke", 1)
    prepare_run_dir(workdir, {"train": configs.to_dict(config)})
    data = make_train_data(get_task_set(TASK_SET), *smoke_data)
    return Trainer(config, data, workdir, show_progress=False, log=lambda _: None, **kw)


@pytest.mark.timeout(900)
def test_killed_run_resumes_to_the_same_result(smoke_data, tmp_path):
    full = _trainer(smoke_data, tmp_path / "full").run()
    assert_smoke_pins("reda", tmp_path / "full")
    # Stop every 2 epochs (mid-stage and across stage boundaries), resuming each time.
    resumed_dir = tmp_path / "resumed"
    restarts = 0
    while True:
        try:
            resumed = _trainer(smoke_data, resumed_dir, epoch_budget=2).run()
            break
        except Preempted:
            restarts += 1
    assert restarts == 3  # 7 epochs (3 dynamics + 2 representation + 2 meta-policy), 2 per process
    for protocol in ("on_policy", "off_policy"):
        a, b = full["protocols"][protocol], resumed["protocols"][protocol]
        assert a["tasks"].keys() == b["tasks"].keys()
        for task in a["tasks"]:
            np.testing.assert_allclose(a["tasks"][task]["per_seed"], b["tasks"][task]["per_seed"],
                                       rtol=1e-6)
    assert full["encoder_accuracy"] == resumed["encoder_accuracy"]
    rows_full = [(r["stage"], r["epoch"], r["metric"], r["seed"], r["value"])
                 for r in read_metrics(tmp_path / "full")]
    rows_resumed = [(r["stage"], r["epoch"], r["metric"], r["seed"], r["value"])
                    for r in read_metrics(resumed_dir)]
    assert rows_full == rows_resumed
    # Every stage logged, every seed.
    assert {r[0] for r in rows_full} == {"dynamics", "representation", "meta_policy"}
    assert {r[3] for r in rows_full} == {"0", "1"}


def test_check_finite_names_stage_epoch_step_and_quantity():
    ok = {"meta/critic_loss": np.ones((2, 5))}
    check_finite("meta_policy", 3, ok)
    bad = {"meta/critic_loss": np.ones((2, 5)), "meta/actor_loss": np.ones((2, 5))}
    bad["meta/actor_loss"][1, 3] = np.nan
    with pytest.raises(NonFiniteError, match=r"meta/actor_loss.*'meta_policy'.*epoch 3, "
                                             r"update step 4 .*seeds \[1\]"):
        check_finite("meta_policy", 3, bad)
    with pytest.raises(NonFiniteError, match="dynamics/holdout_nll.*epoch 7"):
        check_finite("dynamics", 7, {"dynamics/holdout_nll": np.array([[1.0, np.inf]])})


def test_nan_in_training_stops_the_run_with_a_named_quantity(smoke_data, tmp_path):
    train, test = smoke_data
    train = {k: dict(v) for k, v in train.items()}
    name = next(iter(train))
    train[name]["rewards"] = train[name]["rewards"].copy()
    train[name]["rewards"][:] = 1e38  # finite data whose squares overflow in the losses
    config = build_config(TASK_SET, "smoke", 1, ablation="wo_model")
    prepare_run_dir(tmp_path, {"train": configs.to_dict(config)})
    trainer = Trainer(config, make_train_data(get_task_set(TASK_SET), train, test), tmp_path,
                      show_progress=False)
    with pytest.raises(NonFiniteError, match=r"non-finite meta/\w+ in stage 'meta_policy' at epoch 1"):
        trainer.run()


def test_app_end_to_end_reuses_stages_and_refuses_bad_input(tmp_path):
    data_dir = tmp_path / "data"
    base = [sys.executable, "-m", "experiments.train", f"--task_set={TASK_SET}", "--preset=smoke",
            f"--data_dir={data_dir}", "--noprogress"]
    first = subprocess.run(base + [f"--workdir={tmp_path / 'reda'}"], capture_output=True,
                           text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "| gravity_x0.8 |" in first.stdout and "on_policy" in first.stdout
    results = json.loads((tmp_path / "reda" / "results.json").read_text())
    assert set(results["protocols"]) == {"on_policy", "off_policy"}
    for name in ("config.json", "run_info.json", "metrics.csv", "eval_history.jsonl"):
        assert (tmp_path / "reda" / name).exists(), name
    if importlib.util.find_spec("tensorboard"):  # the optional `viz` extra
        assert any((tmp_path / "reda" / "tensorboard").iterdir())
    # w/o UP reuses ReDA's finished dynamics models (same dynamics config).
    wo_up = subprocess.run(base + [f"--workdir={tmp_path / 'wo_up'}", "--ablation=wo_up",
                                   "--from_stage=representation",
                                   f"--from_workdir={tmp_path / 'reda'}"],
                           capture_output=True, text=True, timeout=900)
    assert wo_up.returncode == 0, wo_up.stderr[-3000:]
    # Its metrics.csv keeps the reused models' per-epoch log, as ReDA's run wrote it.
    dyn = lambda run: [r for r in read_metrics(tmp_path / run) if r["stage"] == "dynamics"]
    assert dyn("reda") and dyn("wo_up") == dyn("reda")
    assert "lacks stage" not in wo_up.stderr
    # Different dynamics config: reuse refused, naming the field.
    bad = subprocess.run(base + [f"--workdir={tmp_path / 'two'}", "--num_models=2",
                                 "--from_stage=representation", f"--from_workdir={tmp_path / 'reda'}"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "dynamics" in bad.stderr
    # Same workdir, different config: refused.
    other = subprocess.run(base + [f"--workdir={tmp_path / 'reda'}", "--lambda1=0.5"],
                           capture_output=True, text=True, timeout=300)
    assert other.returncode != 0 and "different config" in other.stderr
    # Unknown ablation names the valid ones.
    unknown = subprocess.run(base + ["--ablation=wo_everything"], capture_output=True, text=True,
                             timeout=120)
    assert unknown.returncode != 0 and "wo_model" in unknown.stderr


# Stages each method runs (metrics.csv) and whether it has a task representation.
BASELINE_STAGES = {
    "om_sac": ({"meta_policy"}, True),
    "om_bc": ({"meta_policy"}, True),
    "focal": ({"representation", "meta_policy"}, True),
    "corro": ({"dynamics", "representation", "meta_policy"}, True),
    "prompt_dt": ({"meta_policy"}, False),
    "bc": ({"meta_policy"}, False),
    "oracle": ({"meta_policy"}, False),
}


@pytest.mark.parametrize("algo", sorted(BASELINE_STAGES))
def test_every_baseline_runs_its_own_stages_and_writes_its_results(smoke_data, tmp_path, algo):
    config = build_config(TASK_SET, "smoke", 1, algo=algo)
    prepare_run_dir(tmp_path, {"train": configs.to_dict(config)})
    task_set = get_task_set(TASK_SET)
    trainer = Trainer(config, make_train_data(task_set, *smoke_data), tmp_path,
                      show_progress=False, log=lambda _: None)
    results = trainer.run()
    stages, has_z = BASELINE_STAGES[algo]
    rows = read_metrics(tmp_path)
    assert_smoke_pins(algo, tmp_path)
    assert {r["stage"] for r in rows} == stages
    assert results["method"] == algo
    for protocol in ("on_policy", "off_policy"):
        per_task = results["protocols"][protocol]["tasks"]
        assert set(per_task) == {t.name for t in task_set.all_tasks}
        assert all(len(v["per_seed"]) == config.num_seeds for v in per_task.values())
    assert (tmp_path / "embeddings.npz").exists() == has_z
    if has_z:
        z = np.load(tmp_path / "embeddings.npz")["z"]
        assert z.shape[:2] == (config.num_seeds, len(task_set.all_tasks))
        assert set(results["encoder_accuracy"]) == {"train_task_id_accuracy",
                                                    "test_task_id_accuracy"}
    # Encoders trained in stage 3 moved away from their initial values (om_sac/om_bc/corro's E2).
    if algo in ("om_sac", "om_bc", "corro"):
        policy = trainer.method.policy_stage
        init = jax.vmap(policy.init, in_axes=(0, None))(
            seed_keys(config.seed, config.num_seeds, 3), policy.data)
        moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                             trainer.method.trainable_params(init), trainer.final_params[1])
        assert max(jax.tree.leaves(moved)) > 0


def test_a_field_added_after_a_run_keeps_it_resumable_only_at_the_behaviour_it_ran_with():
    # A run saved before MetaPolicyConfig.acting_query existed ran with 'current' (the
    # code's behaviour then); the default is 'window' since. The same config at 'current'
    # is no difference (resumable); at the new default it is, and so is any change of a
    # field both configs have. A field added at the behaviour it kept (actor_entropy)
    # follows its default.
    current = json.loads(json.dumps(configs.to_dict(configs.TrainConfig())))
    assert current["meta"]["acting_query"] == "window"
    old = json.loads(json.dumps(current))
    del old["meta"]["acting_query"], old["meta"]["actor_entropy"]
    assert configs.differing_fields({"train": old}, {"train": current}) == [
        "train.meta.acting_query"]
    current["meta"]["acting_query"] = "current"
    assert configs.differing_fields({"train": old}, {"train": current}) == []
    current["meta"]["actor_entropy"] = False
    assert configs.differing_fields({"train": old}, {"train": current}) == [
        "train.meta.actor_entropy"]
    current["meta"]["actor_entropy"] = True
    current["meta"]["q_weight"] = 2.5
    assert configs.differing_fields({"train": old}, {"train": current}) == ["train.meta.q_weight"]
    # A field the current config lacks (removed from the code) is a difference.
    assert configs.differing_fields({"train": current}, {"train": old}) == [
        "train.meta.acting_query", "train.meta.actor_entropy", "train.meta.q_weight"]


def test_a_run_saved_before_the_window_moved_out_of_the_encoder_config_stays_resumable():
    current = json.loads(json.dumps(configs.to_dict(configs.TrainConfig())))
    old = json.loads(json.dumps(current))
    old["encoder"]["window"] = old.pop("window")
    assert configs.differing_fields({"train": old}, {"train": current}) == []
    old["encoder"]["window"] = current["window"] + 1
    assert configs.differing_fields({"train": old}, {"train": current}) == ["train.window"]


def test_method_inputs_statistics_pool_the_training_tasks():
    """Stage 3's statistics (MethodInputs.stage3_stats) pool every training task's rows:
    action_std is the pooled std (not per task, not of the states), the reward range spans
    both tasks, the state stats are the pooled mean and std (+1e-6)."""
    from types import SimpleNamespace
    from reda_jax.methods import MethodInputs
    rng = np.random.default_rng(0)
    arrays = [{"observations": rng.normal(m, 1.0, (50, 3)).astype(np.float32),
               "actions": rng.normal(m, 0.1, (50, 2)).astype(np.float32),
               "rewards": np.full(50, m, np.float32)} for m in (0.0, 1.0)]
    config = build_config("inverted-pendulum-gravity", "smoke", 1, num_seeds=1, algo="oracle")
    stats = MethodInputs(config, SimpleNamespace(train_arrays=arrays)).stage3_stats()
    pooled = np.concatenate([a["actions"] for a in arrays]).astype(np.float64)
    np.testing.assert_allclose(stats["action_std"], pooled.std(0), rtol=1e-5)
    assert stats["action_std"].min() > 0.4        # the tasks' offset, not each task's 0.1
    assert stats["reward_range"] == (0.0, 1.0)
    obs = np.concatenate([a["observations"] for a in arrays]).astype(np.float64)
    np.testing.assert_allclose(stats["state_stats"][0], obs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["state_stats"][1], obs.std(0) + 1e-6, rtol=1e-5)


def test_a_method_added_by_one_module_and_one_registry_line_trains_end_to_end(
        smoke_data, tmp_path, monkeypatch):
    monkeypatch.setitem(configs.METHOD_BUILDERS, "toy", "tests.toy_method:toy_method")
    from tests.toy_method import TOY_EPOCHS, data_mean_action
    config = dataclasses.replace(presets.train_preset("smoke", TASK_SET), algo="toy")
    task_set = get_task_set(TASK_SET)
    data = make_train_data(task_set, *smoke_data)
    method = make_method(config, data)
    assert method.name == "toy" and method.encode is None
    assert [s.name for s in method.stages] == ["representation", "meta_policy"]
    run = tmp_path / "run"
    prepare_run_dir(run, {"train": configs.to_dict(config)})
    trainer = Trainer(config, data, run, show_progress=False, log=lambda _: None)
    results = trainer.run()
    assert results["method"] == "toy"

    def gaps(metric):
        return [float(r["value"]) for r in read_metrics(run) if r["metric"] == metric
                and int(r["seed"]) == 0]

    # The estimate halves its pre-tanh distance to the data's mean action each epoch; the
    # policy stage reads the finished stage's output (7/8 of the way there after 3 epochs)
    # and halves its own distance to that, and acting plays it.
    target = np.abs(np.arctanh(np.clip(np.asarray(data_mean_action(data.train)),
                                       -0.99, 0.99))).max()
    np.testing.assert_allclose(gaps("encoder/gap"), target * 0.5 ** np.arange(1, TOY_EPOCHS + 1),
                               rtol=1e-5)
    estimate = (1 - 0.5 ** TOY_EPOCHS) * target
    policy = gaps("meta/gap")
    assert len(policy) == config.meta.num_epochs
    np.testing.assert_allclose(policy[:2], [0.5 * estimate, 0.25 * estimate], rtol=1e-5)
    # A second run in the same directory restores both finished stages and trains nothing.
    again = Trainer(config, data, run, show_progress=False, log=lambda _: None).run()
    assert again["protocols"] == results["protocols"] and len(gaps("meta/gap")) == len(policy)

def test_a_stage_is_reused_only_where_the_token_kind_cannot_change_it():
    """Dynamics models read transitions, not tokens: a transition-token run may reuse them;
    a representation stage encodes tokens: it may not."""
    from reda_jax.stage_checkpoints import config_diff
    state = configs.to_dict(build_config(TASK_SET, "smoke", 1))
    transition = configs.to_dict(configs.override(build_config(TASK_SET, "smoke", 1),
                                                  "token='transition'"))
    assert config_diff(state, transition, "dynamics") == []
    assert config_diff(state, transition, "representation") == ["token"]


def test_set_takes_several_fields_of_a_section_at_once_validated_together():
    """A section's fields whose values must agree (4 hidden layers need 5 weight decays)
    can only be changed together: one at a time is refused by the config's own check."""
    base = presets.train_preset("mini")
    with pytest.raises(ValueError, match="weight_decay needs 5 values"):
        configs.override(base, "dynamics.hidden_dims=(200, 200, 200, 200)")
    both = configs.override(base, "dynamics={'hidden_dims': (200, 200, 200, 200), "
                                  "'weight_decay': (1e-5, 2e-5, 3e-5, 4e-5, 5e-5), "
                                  "'batch_size': 256}")
    assert both.dynamics.hidden_dims == (200,) * 4 and both.dynamics.batch_size == 256
    assert both.dynamics.weight_decay[-1] == 5e-5 and both.dynamics.num_models == 3
    with pytest.raises(ValueError, match="dynamics has no field 'width'"):
        configs.override(base, "dynamics={'width': 3}")
    with pytest.raises(ValueError, match="dynamics.batch_size: 'x' is not a int"):
        configs.override(base, "dynamics={'batch_size': 'x'}")
