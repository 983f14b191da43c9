"""Online SAC on one unmodified task with several seeds trained as one vmapped program.

Shows that our SAC is a real SAC: returns of the deterministic policy every
`--eval_every` steps are written to <workdir>/returns.csv and printed as a table.

  python -m experiments.validate_sac --task_set=hopper-gravity --multiplier=1.0 \
      --steps=100000 --num_seeds=4 --workdir=runs/validate_sac/hopper
  python -m experiments.validate_sac --hparams=spinningup --num_seeds=2 --workdir=...

An alpha_lr of 0 keeps the temperature fixed at init_temperature. --init, --random_steps,
--update_after and --init_temperature override one setting of --hparams at a time (the
comparison with stable-baselines3 in docs/results.md):

  python -m experiments.validate_sac --init=pytorch --random_steps=5000 --steps=50000 ...
"""
from __future__ import annotations

import collections
import dataclasses

from absl import flags
from tqdm import tqdm

from reda_jax.configs import CollectConfig, SACConfig, to_dict
from reda_jax.behavior.collect import BehaviorCollector, read_returns
from reda_jax.envs.tasks import get_task_set
from reda_jax.run_info import prepare_run_dir, quiet_logs
from reda_jax.validate import InputError, at_least, finite_nonneg, run_app, writable_dir

_TASK_SET = flags.DEFINE_string("task_set", "hopper-gravity", "Task set whose env is used.")
_MULT = flags.DEFINE_float("multiplier", 1.0, "Task multiplier (1.0 = the unmodified env).")
_STEPS = flags.DEFINE_integer("steps", 100_000, "Environment steps per seed.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 5_000, "Steps between evaluations.")
_EVAL_STEPS = flags.DEFINE_integer("eval_steps", 5_000, "Deterministic-policy steps per evaluation.")
_SEEDS = flags.DEFINE_integer("num_seeds", 2, "Seeds, vmapped.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/validate_sac", "Output directory (resumable).")
_HPARAMS = flags.DEFINE_enum(
    "hparams", "ours", ["ours", "spinningup"],
    "ours: the behavior-policy SAC (Adam 3e-4, batch 256, learned temperature from 1.0); "
    "spinningup: the settings of OpenAI Spinning Up's SAC benchmark (Adam 1e-3, batch 100, "
    "fixed temperature 0.2), to compare with its published Hopper curve.")

_INIT = flags.DEFINE_enum("init", None, ["lecun", "pytorch"],
                          "SACConfig.network_init (default: that of --hparams).")
_RANDOM = flags.DEFINE_integer("random_steps", None,
                               "Initial uniform-random steps (default: CollectConfig's).")
_UPDATE_AFTER = flags.DEFINE_integer("update_after", None,
                                     "Steps before the first update (default: CollectConfig's).")
_TEMP = flags.DEFINE_float("init_temperature", None,
                           "SACConfig.init_temperature (default: that of --hparams).")

HPARAMS = {
    "ours": SACConfig(),
    "spinningup": SACConfig(actor_lr=1e-3, critic_lr=1e-3, alpha_lr=0.0, init_temperature=0.2,
                            batch_size=100),
}


def main(argv):
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    for name in ("steps", "eval_every", "eval_steps", "num_seeds"):
        at_least(name, flags.FLAGS[name].value)
    for name in ("random_steps", "update_after"):
        at_least(name, flags.FLAGS[name].value, 0)
    finite_nonneg("init_temperature", _TEMP.value)
    if _STEPS.value % _EVAL_EVERY.value:
        raise InputError("--steps: must be a multiple of --eval_every")
    writable_dir("workdir", _WORKDIR.value)
    task = get_task_set(_TASK_SET.value).task(_MULT.value)
    n_evals = _STEPS.value // _EVAL_EVERY.value
    quiet_logs()
    # 2x256 networks, as in the published SAC results we compare with.
    sac = HPARAMS[_HPARAMS.value]
    if _INIT.value is not None:
        sac = dataclasses.replace(sac, network_init=_INIT.value)
    if _TEMP.value is not None:
        sac = dataclasses.replace(sac, init_temperature=_TEMP.value)
    schedule = {name: flag.value for name, flag in (("random_steps", _RANDOM),
                                                      ("update_after", _UPDATE_AFTER))
                if flag.value is not None}
    config = CollectConfig(sac=sac, total_steps=_STEPS.value, num_checkpoints=n_evals,
                           checkpoint_groups=((n_evals,),), train_transitions=_EVAL_STEPS.value,
                           test_transitions_per_checkpoint=_EVAL_STEPS.value, **schedule)
    seeds = list(range(_SEEDS.value))
    prepare_run_dir(_WORKDIR.value, dict(task=task.name, env_id=task.env_id, seeds=seeds,
                                         collect=to_dict(config)))
    collector = BehaviorCollector(config, [task] * len(seeds), seeds, _WORKDIR.value,
                                  member_names=[f"seed{s}" for s in seeds])
    bar = tqdm(total=_STEPS.value, unit="step", desc=f"SAC {task.env_id} x{_MULT.value}",
               mininterval=5)
    collector.run(lambda n, info: (bar.update(n), bar.set_postfix(ret=f"{info['train_return']:.0f}")))
    bar.close()
    by_step = collections.defaultdict(dict)
    for row in read_returns(f"{_WORKDIR.value}/returns.csv"):
        by_step[int(row["env_steps"])][row["member"]] = float(row["return_mean"])
    print("env_steps " + " ".join(f"{f'seed{s}':>8}" for s in seeds) + "     mean")
    for step in sorted(by_step):
        vals = [by_step[step].get(f"seed{s}", float("nan")) for s in seeds]
        print(f"{step:9d} " + " ".join(f"{v:8.1f}" for v in vals) + f" {sum(vals) / len(vals):8.1f}")


if __name__ == "__main__":
    run_app(main)
