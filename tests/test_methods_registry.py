"""The method registry: every --algo builds from its registered module, and a new method is
one module (tests/toy_method.py) plus one registry line."""
import dataclasses
import importlib

import jax
import numpy as np
import pytest

from reda_jax import configs
from reda_jax.envs.tasks import get_task_set
from reda_jax.experiment import load_or_collect
from reda_jax.metrics_log import read_metrics
from reda_jax.methods import make_method
from reda_jax.run_info import prepare_run_dir
from reda_jax.train import Trainer, make_train_data

TASK_SET = "hopper-gravity"


def test_every_registered_builder_exists_and_the_registry_is_the_algo_list():
    assert configs.ALGOS == tuple(configs.METHOD_BUILDERS)
    for algo, spec in configs.METHOD_BUILDERS.items():
        module, builder = spec.split(":")
        assert callable(getattr(importlib.import_module(module), builder)), algo
    with pytest.raises(ValueError, match="unknown algo 'toy'"):
        configs.TrainConfig(task_set=TASK_SET, algo="toy")


def test_a_method_added_by_one_module_and_one_registry_line_trains_end_to_end(
        tmp_path, monkeypatch):
    monkeypatch.setitem(configs.METHOD_BUILDERS, "toy", "tests.toy_method:toy_method")
    from tests.toy_method import data_mean_action
    config = dataclasses.replace(configs.train_preset("smoke", TASK_SET), algo="toy")
    task_set = get_task_set(TASK_SET)
    data = make_train_data(task_set, *load_or_collect(TASK_SET, "smoke", 1,
                                                      str(tmp_path / "data")))
    method = make_method(config, task_set.obs_dim, task_set.act_dim,
                         len(task_set.train_tasks), task_set.termination_fn)
    assert method.name == "toy" and method.stage1 is None and method.encode is None
    run = tmp_path / "run"
    prepare_run_dir(run, {"train": configs.to_dict(config)})
    trainer = Trainer(config, data, run, show_progress=False, log=lambda _: None)
    results = trainer.run()
    assert results["method"] == "toy"
    gaps = [float(r["value"]) for r in read_metrics(run) if r["metric"] == "meta/gap"
            and int(r["seed"]) == 0]
    assert len(gaps) == config.meta.num_epochs
    # Each epoch halves the pre-tanh distance to the data's mean action (first gap: half of
    # |arctanh(mean)|), and the acting policy plays that action.
    target = np.arctanh(np.clip(np.asarray(data_mean_action(data.train)), -0.99, 0.99))
    np.testing.assert_allclose(gaps[0], 0.5 * np.abs(target).max(), rtol=1e-5)
    np.testing.assert_allclose(gaps[1], 0.25 * np.abs(target).max(), rtol=1e-5)
    meta_state, _ = trainer.final_state
    np.testing.assert_allclose(np.asarray(meta_state.pre_tanh[0]),
                               target * (1 - 0.5 ** config.meta.num_epochs), rtol=1e-5)
    for protocol in configs.PROTOCOLS:
        per_task = results["protocols"][protocol]["tasks"]
        assert set(per_task) == {t.name for t in task_set.all_tasks}
        assert all(np.isfinite(v["per_seed"]).all() for v in per_task.values())
    assert jax.tree.leaves(method.trainable_params(meta_state)) == []
