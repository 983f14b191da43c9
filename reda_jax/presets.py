"""Every size preset in one place: `smoke` (tests, seconds), `mini` (a 2-core CPU, sized
from experiments/benchmark.py), `large` (the paper's behavior data, learners sized as
`mini`), `paper` (the paper's sizes, an accelerator's job), and the didactic example's
own sizes (paper Section 5.1, `reda_jax.report.didactic`)."""
from __future__ import annotations

import dataclasses

from reda_jax import configs
from reda_jax.configs import (CollectConfig, CorroConfig, DynamicsConfig, EncoderConfig,
                              EvalConfig, FocalConfig, MetaPolicyConfig, PromptDTConfig,
                              RepresentationConfig, SACConfig, TrainConfig)

PRESETS = ("smoke", "mini", "large", "paper")


def collect_preset(name: str, task_set: str | None = None) -> CollectConfig:
    """The collection config of a preset (`task_set` is for per-task-set sizes)."""
    if name == "paper":
        return CollectConfig()
    if name == "large":
        # The paper's collection (1M SAC steps per task, 50 checkpoints, N = 1M from
        # checkpoint 25, 20k test transitions from each other checkpoint) with mini's 2x256
        # behavior networks rather than the reference's 3x256, for CPU time.
        return CollectConfig(sac=SACConfig())
    if name == "mini":
        if task_set is not None and task_set.startswith("inverted-pendulum"):
            # The pendulum learns in ~10k steps: a short run keeps checkpoints of every
            # quality (returns ~50 and ~100 are needed by the didactic example).
            return CollectConfig(sac=SACConfig(), total_steps=25_000, random_steps=1_000,
                                 update_after=500,
                                 train_transitions=20_000, test_transitions_per_checkpoint=2_000)
        # Sized from experiments/benchmark.py on a 2-core CPU: ~47 vmapped 5-task SAC
        # updates/s and ~850 batched acting steps/s give ~40 min of training for 5 tasks,
        # plus ~4 min of deterministic data collection.
        # 2x256 rather than the reference's 3x256 behavior networks, for CPU time.
        return CollectConfig(
            sac=SACConfig(), total_steps=100_000, random_steps=5_000, update_after=1_000,
            train_transitions=50_000, test_transitions_per_checkpoint=2_000)
    if name == "smoke":
        return CollectConfig(
            sac=SACConfig(hidden_dims=(64, 64), batch_size=64),
            total_steps=1_000, random_steps=200, update_after=100, update_every=10,
            num_checkpoints=10, checkpoint_groups=((5,), (2, 5, 9), (1, 2, 5, 8, 9)),
            train_transitions=300, test_transitions_per_checkpoint=40)
    raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")


def train_preset(name: str, task_set: str = "hopper-gravity", **overrides) -> TrainConfig:
    """The training config of a preset; `overrides` replace top-level TrainConfig fields."""
    if name == "paper":
        config = TrainConfig(task_set=task_set, data_preset="paper")
    elif name == "large":   # the paper's data, mini's learners
        config = dataclasses.replace(train_preset("mini", task_set), data_preset="large")
    elif name == "mini":
        # Sized from experiments/benchmark.py on a 2-core CPU (docs/benchmarks.md).
        config = TrainConfig(
            task_set=task_set, num_seeds=3, data_preset="mini",
            dynamics=DynamicsConfig(max_epochs=40, patience=5),
            representation=RepresentationConfig(
                num_epochs=20, encoder_updates=250, adversary_updates=100, rollout_batch=500,
                buffer_epochs=10),
            meta=MetaPolicyConfig(num_epochs=20, updates_per_epoch=1000, eval_every=10),
            eval=EvalConfig(num_episodes=3),
            focal=FocalConfig(num_epochs=20, updates_per_epoch=250),
            corro=CorroConfig(cvae_epochs=10, cvae_updates_per_epoch=500, num_epochs=20,
                              updates_per_epoch=250),
            # Prompt-DT's 3x128 GPT with a 20-step history ran at ~2 updates/s for 3 seeds
            # here (experiments/benchmark.py); mini halves width, depth and history.
            prompt_dt=PromptDTConfig(embed_dim=64, num_layers=2, ff_dim=256, history=10,
                                     num_epochs=20, updates_per_epoch=500, warmup_steps=1000,
                                     eval_every=10))
    elif name == "smoke":
        small = SACConfig(hidden_dims=(64, 64), batch_size=64)
        config = TrainConfig(
            task_set=task_set, num_seeds=2, data_preset="smoke", checkpoint_interval_s=0.0,
            dynamics=DynamicsConfig(hidden_dims=(64, 64), weight_decay=(2.5e-5, 5e-5, 1e-4),
                                    reward_hidden_dims=(64, 64), batch_size=256,
                                    max_epochs=3, patience=2),
            encoder=EncoderConfig(ff_dim=64, batch_size=32),
            representation=RepresentationConfig(
                num_epochs=2, encoder_updates=10, adversary_updates=10, rollout_batch=64,
                buffer_epochs=2, adversary=small),
            meta=MetaPolicyConfig(sac=small, num_epochs=2, updates_per_epoch=20, eval_every=1),
            eval=EvalConfig(num_episodes=1, max_steps=50),
            focal=FocalConfig(hidden_dims=(64, 64), contexts_per_task=8, num_epochs=2,
                              updates_per_epoch=10),
            corro=CorroConfig(hidden_dims=(32, 32), z_dim=8, num_negatives=4, batch_size=16,
                              num_epochs=2, updates_per_epoch=10, cvae_hidden=32,
                              cvae_latent=4, cvae_batch_size=32, cvae_epochs=2,
                              cvae_updates_per_epoch=10),
            prompt_dt=PromptDTConfig(embed_dim=32, num_layers=1, ff_dim=64, history=5,
                                     segments_per_task=4, num_epochs=2, updates_per_epoch=10,
                                     warmup_steps=10, eval_every=1))
    else:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return dataclasses.replace(config, **overrides)


DIDACTIC_TASK_SET = "inverted-pendulum-gravity"
"""The didactic example's task family: InvertedPendulum with gravity x1 (task 1) and x2."""
DIDACTIC_EVAL_EPISODES = 50
"""Evaluation episodes per seed and protocol. With 10, the D1_train checkpoint itself
returned 101.1 on them against 89.4 over its ~110 data episodes (collection 0): too noisy
for a 0.9x bar. Batched simulation makes 50 cheap (a few seconds per evaluation)."""


def didactic_collect_config(preset: str, collect_seed: int = 0,
                            num_checkpoints: int | None = None) -> CollectConfig:
    """The didactic's behavior SACs: one per task, 'smoke' or its own default size. Only the
    first few thousand steps matter: returns ~50-100 occur there (docs/notebook.md, 2026-12-02).
    A checkpoint every 100 steps: with one every 250, task 2's return jumped past the
    [40, 60] band between two checkpoints (30 -> 76) and the closest-to-target fallback
    picked different checkpoints on two machines.
    collect_seed: seed of an independent collection (behavior SAC, exploration, resets);
    num_checkpoints: another number of checkpoints (the same training length)."""
    if num_checkpoints is not None:
        return dataclasses.replace(didactic_collect_config(preset, collect_seed),
                                   num_checkpoints=num_checkpoints)
    if preset == "smoke":
        return CollectConfig(
            sac=SACConfig(hidden_dims=(64, 64), batch_size=64), total_steps=800,
            random_steps=200, update_after=100, update_every=10, num_checkpoints=4,
            checkpoint_groups=((1,),), train_transitions=400, test_transitions_per_checkpoint=400,
            seed=collect_seed)
    return CollectConfig(
        sac=SACConfig(), total_steps=6_000, random_steps=1_000, update_after=500,
        num_checkpoints=60, checkpoint_groups=((1,),), train_transitions=10_000,
        test_transitions_per_checkpoint=10_000, seed=collect_seed)


def didactic_train_config(method: str, preset: str, num_seeds: int | None,
                          overrides: tuple[str, ...] = ()) -> TrainConfig:
    """The didactic's training config: 'smoke', or mini-sized learners, shortened so that three methods fit in ~20 min on 2 cores;
    then each 'dotted.field=value' of `overrides` (`configs.override`)."""
    if preset == "smoke":
        config = train_preset("smoke", DIDACTIC_TASK_SET, algo=method)
    else:
        base = train_preset("mini", DIDACTIC_TASK_SET, algo=method)
        config = dataclasses.replace(
            base, dynamics=dataclasses.replace(base.dynamics, max_epochs=20),
            representation=dataclasses.replace(base.representation, num_epochs=10),
            meta=dataclasses.replace(base.meta, num_epochs=10, eval_every=10),
            focal=dataclasses.replace(base.focal, num_epochs=10),
            corro=dataclasses.replace(base.corro, cvae_epochs=5, num_epochs=10),
            eval=dataclasses.replace(base.eval, num_episodes=DIDACTIC_EVAL_EPISODES))
    if num_seeds is not None:
        config = dataclasses.replace(config, num_seeds=num_seeds)
    for assignment in overrides:
        config = configs.override(config, assignment)
    return dataclasses.replace(config, data_preset="didactic")
