"""Behavior-policy training and offline data collection (paper Appendix B.2).

One SAC per member (a task of a task set, or a seed), all members trained as one vmapped
program: the simulators step on the host, one batched policy call per step, and every
`update_every` steps a single jitted `lax.scan` inserts the new steps into the on-device
replay buffer and runs `update_every` vmapped SAC updates.

After each of the `num_checkpoints` evenly spaced checkpoints the deterministic policy
collects that checkpoint's transitions (as the reference code does) on separate envs; the
rollouts are saved atomically per checkpoint, so a killed run resumes from its last
checkpoint. `build_datasets` then cuts them into the train / test datasets of each group.
"""
from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from reda_jax.algos.sac import SAC, SACState, make_sac
from reda_jax.checkpoint import Checkpointer
from reda_jax.configs import CollectConfig
from reda_jax.data import replay
from reda_jax.data.rollout import collect_transitions
from reda_jax.envs.snapshot import get_env_state, set_env_state
from reda_jax.envs.stepping import HostStepper
from reda_jax.envs.tasks import TaskSpec, make_env
from reda_jax.types import Transitions

RETURNS_CSV_FIELDS = ("checkpoint", "env_steps", "member", "task", "seed", "return_mean",
                      "return_std", "episodes", "train_return", "alpha", "critic_loss",
                      "wall_time_s")


def make_train_chunk(sac: SAC, batch_size: int, num_updates: int):
    """(state (M,...), buffer, chunk (M, n, ...), key, do_update) -> (state, buffer, metrics).

    Inserts the chunk, then (if `num_updates` > 0) runs that many vmapped SAC updates in one
    lax.scan with batches sampled on device. Buffer and state are donated."""
    update = jax.vmap(sac.update)

    def train_chunk(state: SACState, buffer: replay.ReplayBuffer, chunk: Transitions, key):
        buffer = replay.insert(buffer, chunk)
        num_members = chunk.rewards.shape[0]

        def body(state, key):
            k_batch, k_update = jax.random.split(key)
            batch = replay.sample(buffer, k_batch, batch_size)
            state, metrics = update(state, batch, jax.random.split(k_update, num_members))
            return state, metrics

        state, metrics = jax.lax.scan(body, state, jax.random.split(key, num_updates))
        return state, buffer, jax.tree.map(lambda x: x.mean(0), metrics)

    return jax.jit(train_chunk, donate_argnums=(0, 1))


def make_batched_act(sac: SAC):
    """(actor_params (M, ...), obs (M, ds), key, deterministic) -> (actions (M, da), next key).

    One jitted call per environment step: the key is split and advanced on the device."""

    def act(actor_params, obs, key, deterministic: bool):
        key, sub = jax.random.split(key)
        keys = jax.random.split(sub, obs.shape[0])
        actions = jax.vmap(sac.act, in_axes=(0, 0, 0, None))(actor_params, obs, keys, deterministic)
        return actions, key

    return act


def _atomic_savez(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


class BehaviorCollector:
    """Trains SAC for every member and saves each checkpoint's deterministic rollouts.

    workdir layout: checkpoints/train (latest resumable state), checkpoints/policies/<k>
    (actor params of checkpoint k for every member), rollouts/<member>/ckpt_<k>.npz,
    returns.csv (one row per checkpoint and member).
    """

    def __init__(self, config: CollectConfig, members: Sequence[TaskSpec], seeds: Sequence[int],
                 workdir: str | os.PathLike, member_names: Sequence[str] | None = None):
        if len(members) != len(seeds):
            raise ValueError(f"{len(members)} members but {len(seeds)} seeds")
        self.config = config
        self.members = list(members)
        self.seeds = list(seeds)
        self.names = list(member_names or [t.name for t in members])
        self.workdir = Path(workdir)
        self.envs = [make_env(t) for t in self.members]
        self.data_envs = [make_env(t) for t in self.members]
        self.obs_dim = self.envs[0].observation_space.shape[0]
        self.act_dim = self.envs[0].action_space.shape[0]
        self.sac = make_sac(config.sac, self.obs_dim, self.act_dim)
        self._act = jax.jit(make_batched_act(self.sac), static_argnums=3)
        self.steps_per_ckpt = config.total_steps // config.num_checkpoints
        self.train_ckpt = Checkpointer(self.workdir / "checkpoints" / "train", max_to_keep=1)
        self.policy_ckpt = Checkpointer(self.workdir / "checkpoints" / "policies", max_to_keep=None)

    # ----- state -------------------------------------------------------------------------
    def _fresh(self):
        init_keys = jnp.stack([jax.random.fold_in(jax.random.key(s), 0) for s in self.seeds])
        state = jax.vmap(self.sac.init)(init_keys)
        buffer = replay.init_replay(len(self.members), self.config.total_steps,
                                    self.obs_dim, self.act_dim)
        key = jax.random.key(self.config.seed)
        return state, buffer, key

    def _restore(self, step: int):
        state, buffer, key = self._fresh()
        meta = self.train_ckpt.restore_meta(step)
        size = int(meta["buffer_size"])
        like = dict(state=state, data=jax.tree.map(lambda x: x[:, :size], buffer.data),
                    key=jax.random.key_data(key))
        tree, meta = self.train_ckpt.restore(step, like)
        buffer = replay.insert(buffer, jax.tree.map(jnp.asarray, tree["data"]))
        return (jax.tree.map(jnp.asarray, tree["state"]), buffer,
                jax.random.wrap_key_data(jnp.asarray(tree["key"])), meta)

    def _save(self, k: int, state, buffer, key, meta: dict) -> None:
        size = int(buffer.size)
        tree = dict(state=state, data=jax.tree.map(lambda x: x[:, :size], buffer.data),
                    key=jax.random.key_data(key))
        self.policy_ckpt.save(k, state.actor_params, {"checkpoint": k, "members": self.names})
        self.train_ckpt.save(k, tree, {**meta, "buffer_size": size})

    # ----- main loop ---------------------------------------------------------------------
    def run(self, progress: Callable[[int, dict], None] | None = None) -> None:
        cfg = self.config
        latest = self.train_ckpt.latest_step()
        if latest is None:
            state, buffer, key = self._fresh()
            meta = {"env_steps": 0, "recent_returns": [[] for _ in self.members]}
            start = 1
        else:
            state, buffer, key, meta = self._restore(latest)
            start = latest + 1
            # Rollouts of the latest checkpoint may be missing if the kill came between.
            self._collect_checkpoint(latest, state, meta, time.time())
            self.restore_missing_rollouts(latest - 1)
        train_chunk = make_train_chunk(self.sac, cfg.sac.batch_size, cfg.update_every)
        insert_only = jax.jit(replay.insert, donate_argnums=0)
        env_steps = int(meta["env_steps"])
        recent = [list(r) for r in meta["recent_returns"]]
        stepper = HostStepper.reset(self.envs, [1000 * s for s in self.seeds])
        if "envs" in meta:  # continue the episodes in progress exactly
            for env, snap in zip(self.envs, meta["envs"]):
                set_env_state(env, snap)
            stepper = HostStepper(self.envs, meta["obs"], meta["running_returns"])
        m, n = len(self.members), cfg.update_every
        metrics = {}
        t0 = time.time()
        for k in range(start, cfg.num_checkpoints + 1):
            rng = np.random.default_rng([cfg.seed, k])  # exploration noise of this segment
            for _ in range(self.steps_per_ckpt // n):
                chunk = {f: np.zeros((m, n) + s, np.float32) for f, s in (
                    ("observations", (self.obs_dim,)), ("actions", (self.act_dim,)),
                    ("rewards", ()), ("next_observations", (self.obs_dim,)),
                    ("terminals", ()), ("truncations", ()))}
                for j in range(n):
                    if env_steps < cfg.random_steps:
                        actions = rng.uniform(-1.0, 1.0, (m, self.act_dim)).astype(np.float32)
                    else:
                        actions, key = self._act(state.actor_params, stepper.obs, key, False)
                        actions = np.asarray(actions)
                    step = stepper.step(actions)
                    chunk["observations"][:, j] = step.observations
                    chunk["actions"][:, j] = step.actions
                    chunk["rewards"][:, j] = step.rewards
                    chunk["next_observations"][:, j] = step.next_observations
                    chunk["terminals"][:, j] = step.terminated
                    chunk["truncations"][:, j] = step.truncated & ~step.terminated
                    for i, ret in enumerate(step.episode_returns):
                        if ret is not None:
                            recent[i] = (recent[i] + [ret])[-10:]
                    env_steps += 1
                chunk_t = Transitions(**{f: jnp.asarray(v) for f, v in chunk.items()})
                if env_steps > cfg.update_after:
                    key, sub = jax.random.split(key)
                    state, buffer, metrics = train_chunk(state, buffer, chunk_t, sub)
                else:
                    buffer = insert_only(buffer, chunk_t)
                if progress is not None:
                    progress(n, {"env_steps": env_steps, "train_return": _recent_mean(recent)})
            meta = {"env_steps": env_steps, "recent_returns": recent,
                    "envs": [get_env_state(env) for env in self.envs],
                    "obs": stepper.obs.tolist(), "running_returns": stepper.running.tolist(),
                    "alpha": np.asarray(metrics.get("alpha", np.full(m, np.nan))).tolist(),
                    "critic_loss": np.asarray(metrics.get("critic_loss", np.full(m, np.nan))).tolist()}
            self._save(k, state, buffer, key, meta)
            self._collect_checkpoint(k, state, meta, t0)

    def restore_missing_rollouts(self, last: int) -> list[int]:
        """Re-rolls the deterministic data of every checkpoint k <= last whose rollouts are
        missing (e.g. deleted) from its stored policy: the same policy, episodes and seed,
        so the same data. Returns the checkpoints re-rolled."""
        missing = [k for k in range(1, last + 1)
                   if not all(self._rollout_path(i, k).exists() for i in range(len(self.members)))]
        if not missing:
            return []
        like = jax.vmap(self.sac.init)(jnp.stack([jax.random.key(s) for s in self.seeds]))
        recorded = {int(r["checkpoint"]) for r in read_returns(self.workdir / "returns.csv")} \
            if (self.workdir / "returns.csv").exists() else set()
        for k in missing:
            params, _ = self.policy_ckpt.restore(k, like.actor_params)
            meta = {"env_steps": k * self.steps_per_ckpt,
                    "recent_returns": [[] for _ in self.members]}
            self._collect_checkpoint(k, like.replace(actor_params=params), meta, time.time(),
                                     record=k not in recorded)
        return missing

    def _rollout_path(self, member: int, k: int) -> Path:
        return self.workdir / "rollouts" / self.names[member] / f"ckpt_{k:03d}.npz"

    def _collect_checkpoint(self, k: int, state: SACState, meta: dict, t0: float,
                            record: bool = True) -> None:
        """Deterministic-policy data of checkpoint k for every member (skipped if saved);
        `record`: append its returns to returns.csv."""
        if all(self._rollout_path(i, k).exists() for i in range(len(self.members))):
            return
        n = self.config.transitions_per_checkpoint()[k]
        params = state.actor_params
        act, key = self._act, jax.random.key(0)  # the key is unused by the deterministic policy

        def policy(obs):
            return np.asarray(act(params, obs, key, True)[0])

        data, returns = collect_transitions(policy, self.data_envs, n,
                                            seed=10_000 * (self.config.seed + 1) + 100 * k)
        rows = []
        for i in range(len(self.members)):
            path = self._rollout_path(i, k)
            path.parent.mkdir(parents=True, exist_ok=True)
            rets = np.asarray(returns[i] if returns[i] else [data[i]["rewards"].sum()])
            _atomic_savez(path, **data[i], episode_returns=rets,
                          complete_episodes=np.asarray(len(returns[i])))
            rows.append(dict(
                checkpoint=k, env_steps=meta["env_steps"], member=self.names[i],
                task=self.members[i].name, seed=self.seeds[i],
                return_mean=float(rets.mean()), return_std=float(rets.std()),
                episodes=len(returns[i]), train_return=_mean(meta["recent_returns"][i]),
                alpha=meta.get("alpha", [np.nan] * len(self.members))[i],
                critic_loss=meta.get("critic_loss", [np.nan] * len(self.members))[i],
                wall_time_s=round(time.time() - t0, 1)))
        if record:
            _append_csv(self.workdir / "returns.csv", rows)


    def extend_rollouts(self, checkpoints: Sequence[int], need: int,
                        progress: Callable[[int], None] | None = None) -> None:
        """Rolls checkpoint k's stored deterministic policy out again (k in `checkpoints`,
        every member) until its saved rollout holds at least `need` transitions; the new
        episodes are appended, so the first n transitions (every dataset cut from them) are
        unchanged. The reset seed of each extension depends on (collection seed, k, the
        length so far): extending in one step or several gives distinct episodes."""
        init_keys = jnp.stack([jax.random.key(s) for s in self.seeds])
        like = jax.vmap(self.sac.init)(init_keys).actor_params   # structure only
        for k in checkpoints:
            have = min(_rollout_size(self._rollout_path(i, k)) for i in range(len(self.members)))
            if have >= need:
                continue
            params, _ = self.policy_ckpt.restore(k, like)
            act, key = self._act, jax.random.key(0)   # deterministic: the key is unused

            def policy(obs, params=params):
                return np.asarray(act(params, obs, key, True)[0])

            seed = int(np.random.SeedSequence([self.config.seed, k, have]).generate_state(1)[0]
                       % 2**30)
            data, returns = collect_transitions(policy, self.data_envs, need - have, seed=seed)
            for i in range(len(self.members)):
                path = self._rollout_path(i, k)
                with np.load(path) as z:
                    old = {f: z[f] for f in z.files}
                old_n = len(old["rewards"])
                if not old["terminals"][-1]:   # the earlier cut ends its episode
                    old["truncations"][-1] = True
                merged = {f: np.concatenate([old[f], data[i][f]]) for f in data[i]}
                _atomic_savez(path, **merged,
                              episode_returns=np.concatenate([old["episode_returns"],
                                                              np.asarray(returns[i])]),
                              complete_episodes=np.asarray(int(old["complete_episodes"])
                                                           + len(returns[i])))
                assert len(merged["rewards"]) == old_n + need - have
            if progress is not None:
                progress(need - have)


def _rollout_size(path: Path) -> int:
    if not path.is_file():
        raise FileNotFoundError(f"missing behavior rollout {path}: run the collection first")
    with np.load(path) as z:
        return len(z["rewards"])


def _mean(xs) -> float:
    return float(np.mean(xs)) if len(xs) else float("nan")


def _recent_mean(recent) -> float:
    vals = [x for r in recent for x in r[-3:]]
    return _mean(vals)


def _append_csv(path: Path, rows: list[dict]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RETURNS_CSV_FIELDS)
        if new:
            w.writeheader()
        w.writerows(rows)
        f.flush()
        os.fsync(f.fileno())


def read_returns(path: str | os.PathLike) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def extended_dataset_root(workdir: str | os.PathLike, train_transitions: int) -> Path:
    """Where `extend_collection` writes the datasets of N = train_transitions per task."""
    return Path(workdir) / f"datasets-n{train_transitions}"


def extended_config(config: CollectConfig, train_transitions: int, num_checkpoints: int
                    ) -> CollectConfig:
    """The collection config of the extended datasets: N = train_transitions, and only the
    checkpoint group of `num_checkpoints` checkpoints (the others' rollouts keep their
    length)."""
    import dataclasses

    from reda_jax.data.datasets import find_group
    return dataclasses.replace(config, train_transitions=train_transitions,
                               checkpoint_groups=(find_group(config, num_checkpoints),))


def extend_collection(task_set_name: str, preset: str, workdir: str, train_transitions: int,
                      num_checkpoints: int = 1, seed: int | None = None,
                      show_progress: bool = True) -> Path:
    """More training data from the SAME behavior policies: runs (or resumes, or finds
    finished) the collection, rolls the stored policies of the `num_checkpoints` group out
    again until each holds N / |group| transitions, and writes that group's train and test
    datasets with N = train_transitions per task to `extended_dataset_root` (the preset's
    own datasets stay as they are; the first 50k rows of a 200k dataset are the 50k
    dataset's). Costs simulation only. Returns the dataset root."""
    import dataclasses

    from tqdm import tqdm

    from reda_jax import presets
    from reda_jax.data.datasets import build_datasets
    from reda_jax.envs.tasks import get_task_set
    run_collection(task_set_name, preset, workdir, seed, show_progress)
    task_set = get_task_set(task_set_name)
    config = presets.collect_preset(preset, task_set_name)
    if seed is not None:
        config = dataclasses.replace(config, seed=seed)
    ext = extended_config(config, train_transitions, num_checkpoints)
    group = ext.checkpoint_groups[0]
    tasks = task_set.all_tasks
    collector = BehaviorCollector(config, tasks, [1000 * config.seed + i for i in range(len(tasks))],
                                  workdir)
    need = train_transitions // len(group)
    bar = tqdm(total=len(group) * need, unit="step", disable=not show_progress, mininterval=5,
               desc=f"extend to N={train_transitions}")
    t0 = time.time()
    collector.extend_rollouts(group, need, lambda n: bar.update(n))
    bar.close()
    root = extended_dataset_root(workdir, train_transitions)
    build_datasets(f"{workdir}/rollouts", root, task_set, ext)
    print(f"N={train_transitions} per task from checkpoints {list(group)} took "
          f"{time.time() - t0:.0f} s; datasets in {root}")
    return root


def run_collection(task_set_name: str, preset: str, workdir: str, seed: int | None = None,
                   show_progress: bool = True) -> list[str]:
    """Trains the behavior policies, collects and writes the datasets; returns their ids."""
    import dataclasses

    from tqdm import tqdm

    from reda_jax import configs, presets
    from reda_jax.data.datasets import build_datasets
    from reda_jax.envs.tasks import get_task_set
    from reda_jax.run_info import prepare_run_dir
    task_set = get_task_set(task_set_name)
    config = presets.collect_preset(preset, task_set_name)
    if seed is not None:
        config = dataclasses.replace(config, seed=seed)
    prepare_run_dir(workdir, dict(task_set=task_set_name, preset=preset,
                                  collect=configs.to_dict(config)))
    tasks = task_set.all_tasks
    seeds = [1000 * config.seed + i for i in range(len(tasks))]
    collector = BehaviorCollector(config, tasks, seeds, workdir)
    done = (collector.train_ckpt.latest_step() or 0) * collector.steps_per_ckpt
    bar = tqdm(total=config.total_steps, initial=done, unit="step", disable=not show_progress, mininterval=5,
               desc=f"{task_set_name} ({len(tasks)} tasks)")
    t0 = time.time()
    collector.run(lambda n, info: (bar.update(n), bar.set_postfix(
        ret=f"{info['train_return']:.0f}", refresh=False)))
    bar.close()
    ids = build_datasets(f"{workdir}/rollouts", f"{workdir}/datasets", task_set, config)
    print(f"collection of {task_set_name} ({preset}) took {time.time() - t0:.0f} s; "
          f"{len(ids)} datasets in {workdir}/datasets")
    return ids
