"""Typed, documented configuration and presets (smoke, mini, paper).

Every field is documented where it is declared. Configs are frozen dataclasses, hashable,
so they can be closed over by jitted factories; `to_dict` gives the JSON saved in each run.
"""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Soft actor-critic (behavior policies; later the adversary and the meta-policy)."""

    hidden_dims: tuple[int, ...] = (256, 256)
    """Hidden widths of the actor and of each of the two critics (paper B.5: 2x256)."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the twin critics."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log(temperature); 0 keeps the temperature fixed."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak averaging rate of the target critics."""
    init_temperature: float = 1.0
    """Initial entropy temperature alpha."""
    target_entropy: float | None = None
    """Target policy entropy; None means -|A|."""
    log_std_min: float = -20.0
    """Lower clip of the actor's pre-tanh log standard deviation (reference code: -20)."""
    log_std_max: float = 2.0
    """Upper clip of the actor's pre-tanh log standard deviation (reference code: 2)."""
    backup_entropy: bool = True
    """Subtract alpha * log pi(a'|s') in the TD target (standard SAC)."""
    batch_size: int = 256
    """Transitions per gradient update."""


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """Behavior-policy training and offline data collection (paper B.2)."""

    sac: SACConfig = SACConfig(hidden_dims=(256, 256, 256))
    """The SAC learner trained online, one per task (reference code: 3x256 hidden layers;
    the paper does not say)."""
    total_steps: int = 1_000_000
    """Environment steps per task (paper: 1M)."""
    random_steps: int = 10_000
    """Initial steps with uniform random actions (reference code: 10k)."""
    update_after: int = 1_000
    """Environment steps before the first gradient update (reference code: 1000)."""
    update_every: int = 50
    """Environment steps between update chunks; each chunk runs `update_every` gradient
    updates (one update per environment step) in one jitted lax.scan."""
    num_checkpoints: int = 50
    """Policy checkpoints, evenly spaced; checkpoint k (1-based) is taken after
    k * total_steps / num_checkpoints steps (paper: 50, every 20k steps)."""
    checkpoint_groups: tuple[tuple[int, ...], ...] = ((25,), (5, 25, 45), (5, 10, 25, 40, 45))
    """Training checkpoint groups (1-based); a group's size names it (1, 3, 5 checkpoints)."""
    train_transitions: int = 1_000_000
    """N: transitions per task in a training dataset, split equally over its group's
    checkpoints (paper: 1M, i.e. 200k each for 5 checkpoints)."""
    test_transitions_per_checkpoint: int = 20_000
    """Transitions per checkpoint in the test (off-policy context) data, taken from every
    checkpoint outside the group (reference code: 20k for most checkpoints)."""
    seed: int = 0
    """Seed of the whole collection (network init, exploration, environment resets)."""

    def __post_init__(self):
        if self.total_steps % self.num_checkpoints:
            raise ValueError(
                f"total_steps={self.total_steps} must be a multiple of num_checkpoints={self.num_checkpoints}")
        steps_per_ckpt = self.total_steps // self.num_checkpoints
        if steps_per_ckpt % self.update_every:
            raise ValueError(
                f"steps per checkpoint ({steps_per_ckpt}) must be a multiple of update_every={self.update_every}")
        for group in self.checkpoint_groups:
            bad = [k for k in group if not 1 <= k <= self.num_checkpoints]
            if bad:
                raise ValueError(f"checkpoint group {group} has indices outside 1..{self.num_checkpoints}: {bad}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for name in ("total_steps", "update_every", "train_transitions", "test_transitions_per_checkpoint"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def transitions_per_checkpoint(self) -> dict[int, int]:
        """How many transitions to collect at each checkpoint (1-based): the largest
        share any group asks of it, and at least the test size."""
        need = {k: self.test_transitions_per_checkpoint for k in range(1, self.num_checkpoints + 1)}
        for group in self.checkpoint_groups:
            share = self.train_transitions // len(group)
            for k in group:
                need[k] = max(need[k], share)
        return need


PRESETS = ("smoke", "mini", "paper")


def collect_preset(name: str, task_set: str | None = None) -> CollectConfig:
    """The collection config of a preset (`task_set` is for per-task-set sizes)."""
    if name == "paper":
        return CollectConfig()
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


def to_dict(config: Any) -> dict:
    """A JSON-able dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)
