"""stable-baselines3's SAC with its defaults on gymnasium's Hopper-v5, evaluated as
`experiments.validate_sac` evaluates ours: every --eval_every env steps, the deterministic
policy runs --eval_steps steps and the return is the mean over its complete episodes.
The reference of docs/results.md's "Against stable-baselines3" table.

  python scripts/sb3_sac.py --seed=0 --steps=30000 --out=/tmp/sb3_seed0.json

Needs stable-baselines3 and torch, which are not dependencies of this project: run it in a
separate virtualenv (`pip install stable-baselines3 gymnasium[mujoco]`; the table used
stable-baselines3 2.9.2 and torch 2.13.0+cpu, one thread: `--threads=1`). The script of
that measurement was kept outside the repository; this is it rewritten from its
description (SB3 defaults, seeds 0 and 1, the same evaluation), not re-run since.
"""
from __future__ import annotations

import argparse
import json


def evaluate(model, env, steps: int, seed: int) -> float:
    """Mean return over the complete episodes of `steps` deterministic steps."""
    obs, _ = env.reset(seed=seed)
    returns, total = [], 0.0
    for _ in range(steps):
        action, _ = model.predict(obs, deterministic=True)
        obs, r, term, trunc, _ = env.step(action)
        total += float(r)
        if term or trunc:
            returns.append(total)
            total = 0.0
            obs, _ = env.reset()
    return sum(returns) / len(returns) if returns else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=30000)
    parser.add_argument("--eval_every", type=int, default=5000)
    parser.add_argument("--eval_steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON of {env steps: return}")
    args = parser.parse_args()
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    torch.set_num_threads(args.threads)
    eval_env = gym.make("Hopper-v5")
    curve: dict[int, float] = {}

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % args.eval_every == 0:
                curve[self.num_timesteps] = evaluate(self.model, eval_env, args.eval_steps,
                                                     seed=10_000 + args.seed)
                print(f"{self.num_timesteps} {curve[self.num_timesteps]:.1f}", flush=True)
            return True

    model = SAC("MlpPolicy", gym.make("Hopper-v5"), seed=args.seed)
    model.learn(args.steps, callback=Evaluate())
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"seed": args.seed, "returns": curve}, f, indent=1)


if __name__ == "__main__":
    main()
