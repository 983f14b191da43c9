import dataclasses

import pytest

from reda_jax import configs
from reda_jax.method_names import ABLATIONS, method_name, method_of


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_every_ablation_reads_back_as_the_name_it_was_launched_under(ablation):
    rep = dataclasses.replace(configs.RepresentationConfig(), **ABLATIONS[ablation])
    assert method_of("reda", dataclasses.asdict(rep)) == method_name("reda", ablation)


def test_names_of_other_algos_and_of_old_configs():
    assert method_of("focal", {"augmentation": "none"}) == "focal"
    # A config.json saved before a field existed reads it at its default.
    assert method_of("reda", {}) == "reda"
    assert method_of("reda", {"lambda2": 0.0}) == "reda_wo_tc"
    # Several ablations at once are named by the first in ABLATIONS' order.
    assert method_of("reda", {"augmentation": "random", "lambda1": 0.0}) == "reda_wo_adv"
    assert method_name("reda", "wo_up") == "reda_wo_up" and method_name("bc", "none") == "bc"


def test_a_run_is_named_once_from_its_final_config():
    """--lambda1=0 alone is w/o UP (its directory and results.json alike); an ablation
    contradicted by another flag is refused naming both."""
    import dataclasses

    import pytest

    from reda_jax.configs import RepresentationConfig
    from reda_jax.method_names import run_method
    rep = lambda **kw: dataclasses.asdict(RepresentationConfig(**kw))
    assert run_method("reda", "none", rep(lambda1=0.0)) == "reda_wo_up"
    assert run_method("reda", "wo_up", rep(lambda1=0.0)) == "reda_wo_up"
    assert run_method("reda", "none", rep()) == "reda"
    assert run_method("focal", "none", rep()) == "focal"
    with pytest.raises(ValueError, match=r"--ablation=wo_up sets representation.lambda1=0.0, "
                                         r"but another flag \(--lambda1 or --set\) sets it to 0.5"):
        run_method("reda", "wo_up", rep(lambda1=0.5))


def test_train_app_refuses_a_flag_that_contradicts_the_ablation_in_one_line(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "experiments.train", "--task_set=hopper-gravity",
                        "--preset=smoke", "--ablation=wo_up", "--lambda1=0.5",
                        f"--workdir={tmp_path / 'w'}"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "--ablation=wo_up" in r.stderr and "0.5" in r.stderr
    assert not (tmp_path / "w").exists()
