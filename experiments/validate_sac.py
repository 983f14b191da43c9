"""Online SAC on one unmodified task with several seeds trained as one vmapped program.

Shows that our SAC is a real SAC: returns of the deterministic policy every
`--eval_every` steps are written to <workdir>/returns.csv and printed as a table.

  python -m experiments.validate_sac --task_set=hopper-gravity --multiplier=1.0 \
      --steps=100000 --num_seeds=4 --workdir=runs/validate_sac/hopper
  python -m experiments.validate_sac --hparams=spinningup --num_seeds=2 --workdir=...

An alpha_lr of 0 keeps the temperature fixed at init_temperature.
"""
from __future__ import annotations

import collections

from absl import app, flags
from tqdm import tqdm

from reda_jax.configs import CollectConfig, SACConfig, to_dict
from reda_jax.data.collect import BehaviorCollector, read_returns
from reda_jax.envs.tasks import get_task_set
from reda_jax.run_info import prepare_run_dir, quiet_logs

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

HPARAMS = {
    "ours": SACConfig(),
    "spinningup": SACConfig(actor_lr=1e-3, critic_lr=1e-3, alpha_lr=0.0, init_temperature=0.2,
                            batch_size=100),
}


def main(_):
    if _STEPS.value % _EVAL_EVERY.value:
        raise app.UsageError("--steps must be a multiple of --eval_every")
    task = get_task_set(_TASK_SET.value).task(_MULT.value)
    n_evals = _STEPS.value // _EVAL_EVERY.value
    quiet_logs()
    # 2x256 networks, as in the published SAC results we compare with.
    config = CollectConfig(sac=HPARAMS[_HPARAMS.value], total_steps=_STEPS.value, num_checkpoints=n_evals,
                           checkpoint_groups=((n_evals,),), train_transitions=_EVAL_STEPS.value,
                           test_transitions_per_checkpoint=_EVAL_STEPS.value)
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
    app.run(main)
