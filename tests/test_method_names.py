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
