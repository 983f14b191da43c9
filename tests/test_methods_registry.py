"""The method registry: every --algo builds from its registered module. (A new method added
as one module plus one registry line, trained end to end: tests/test_train.py, on its
smoke data.)"""
import importlib

import pytest

from reda_jax import configs

TASK_SET = "hopper-gravity"


def test_every_registered_builder_exists_and_the_registry_is_the_algo_list():
    assert configs.ALGOS == tuple(configs.METHOD_BUILDERS)
    for algo, spec in configs.METHOD_BUILDERS.items():
        module, builder = spec.split(":")
        assert callable(getattr(importlib.import_module(module), builder)), algo
    with pytest.raises(ValueError, match="unknown algo 'toy'"):
        configs.TrainConfig(task_set=TASK_SET, algo="toy")


def test_a_stage_must_name_a_pipeline_slot_and_takes_its_rng_stream_from_it():
    from reda_jax.methods import Stage
    noop = lambda *args: None  # noqa: E731
    assert [Stage(n, n, noop, noop, 1, None).index
            for n in ("dynamics", "representation", "meta_policy")] == [1, 2, 3]
    with pytest.raises(ValueError, match="stage name must be one of"):
        Stage("stage1", "stage 1", noop, noop, 1, None)
