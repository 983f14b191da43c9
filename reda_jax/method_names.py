"""A run's method name, declared once: the algo, or ReDA with one of its ablations (paper
Section 5.3). The ablations are stage-2 settings; a run's name is read back from its config
by the same table, so `experiments.train` (forward), `Trainer` results and
`experiments.tables` (older results.json without a name) cannot disagree. No jax import:
the tables read it on machines without an accelerator stack."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from reda_jax.configs import RepresentationConfig

ABLATIONS: dict[str, dict[str, Any]] = {
    "none": {},
    "wo_model": {"augmentation": "none"},      # no model rollouts: real windows only
    "wo_adv": {"augmentation": "random"},      # random-action rollouts, no adversary
    "wo_up": {"lambda1": 0.0},                 # no uncertainty penalty (Eq. 6)
    "wo_tc": {"lambda2": 0.0},                 # no task-consistency reward (Eq. 5)
}
"""Ablation -> the RepresentationConfig fields it sets. Read back in this order: a config
matching several (e.g. augmentation 'none' and lambda1 0) is named by the first."""

_REPRESENTATION_DEFAULTS = dataclasses.asdict(RepresentationConfig())


def method_name(algo: str, ablation: str) -> str:
    """'reda', 'reda_wo_adv', ... or the algo."""
    return algo if ablation == "none" else f"{algo}_{ablation}"


def method_of(algo: str, representation: Mapping[str, Any]) -> str:
    """The name of a run of `algo` with these stage-2 settings (a config.json
    'representation' dict or `dataclasses.asdict` of one; missing fields read as their
    defaults, as in a run saved before the field existed)."""
    if algo != "reda":
        return algo
    for ablation, fields in ABLATIONS.items():
        if fields and all(representation.get(k, _REPRESENTATION_DEFAULTS[k]) == v
                          for k, v in fields.items()):
            return method_name(algo, ablation)
    return algo


def run_method(algo: str, ablation: str, representation: Mapping[str, Any]) -> str:
    """The one name of a run whose final stage-2 settings are `representation`, after every
    flag and --set: `method_of` them. A value that contradicts the requested ablation (e.g.
    --ablation=wo_up with lambda1 0.5) is a ValueError naming both, so that a run is never
    stored under one method and labelled with another."""
    for field, value in ABLATIONS[ablation].items():
        final = representation.get(field, _REPRESENTATION_DEFAULTS[field])
        if final != value:
            raise ValueError(f"--ablation={ablation} sets representation.{field}={value!r}, "
                             f"but another flag (--{field} or --set) sets it to {final!r}")
    return method_of(algo, representation)
