"""Evaluation of a context-conditioned meta-policy in the real simulator (paper Sec. 5.2).

Every (policy seed s, task t, episode e) gets its own simulator and runs exactly one
episode; all S x T x E simulators step together with ONE batched policy call per env step,
always at the full (S, M) shape (finished envs are padding), so act_fn compiles once. The
simulators are MuJoCo stepped directly (``reda_jax.envs.batched.BatchedEnvs``: the same
observations, rewards, terminations and time limit as the gymnasium v5 env, bit for bit,
and the same initial states for the same reset seed), not one gymnasium env per episode.
Shapes: S = seeds, T = tasks, E = episodes per task, M = T * E envs per seed (env m = t*E + e),
K = window, D = the token size.

A context *token* is (s_t, a_{t-1}) or, with ``token='transition'``, (s_t, a_{t-1}, r_{t-1},
s_{t-1}) (`data.tokens`; the previous step's parts are 0 at an episode start). The query is
always the current token. The context differs by protocol:

* ``on_policy``: the policy's own most recent K tokens of the current episode, right-aligned,
  including the current token at position K-1 (so ``context[..., -1, :] == query``); positions
  before the episode start are zero with mask 0. At step t the mask holds min(t+1, K) ones.
* ``off_policy``: at the episode start one window of K consecutive tokens is drawn from that
  task's test data (transitions of unseen behavior checkpoints) with
  ``sample_context_windows`` (right-aligned, never crossing an episode boundary, mask 0 on
  padding); it stays fixed for the whole episode. The draws are
  seeded by ``seed`` and differ per policy seed, task and episode. (The public code erases
  these contexts, see reference section 8; we do not.)

With ``history = H > 0`` (both protocols) the loop also keeps every env's own last H steps of
the current episode and passes them as a fifth argument ``hist`` (a ``History``): tokens
(S, M, H, D) right-aligned exactly like the on-policy context (current token at H-1, zeros and
mask 0 before the episode start), mask (S, M, H), returns_before (S, M, H) float32 = the
undiscounted return collected before that step (0 at step 0), timesteps (S, M, H) int32 = the
step's index within the episode (0 on padding). A decision transformer reads it.

Environment reset seeds depend on (seed, task index, episode index) only, so every policy seed
meets the same initial states (a paired comparison: the spread over seeds is the policy's).

Public API::

    evaluate(tasks, act_fn, params, num_seeds, window, protocol, num_episodes, seed,
             max_steps=None, context_data=None, history=0, ..., token='state') -> EvalResult
    History(tokens, mask, returns_before, timesteps)      (the fifth act_fn argument, history > 0)
    env_seed(seed, task_index, episode_index) -> int     (the reset seed evaluate uses)
    summarize(result, train_task_names=None) -> dict (JSON-able)
    format_table({protocol: summary}) -> str (markdown)

Length: both protocols share the batched episode loop, the context sources and the
summary; one module keeps them from drifting apart.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from reda_jax.configs import PROTOCOLS
from reda_jax.data.context import DeviceDataset, make_device_dataset, sample_context_windows
from reda_jax.data.tokens import make_tokens, token_dim
from reda_jax.envs.batched import BatchedEnvs
from reda_jax.envs.tasks import TaskSpec
from reda_jax.types import History, Transitions


ActFn = Callable[..., Any]
"""(params (S, ...), query (S, M, D), context (S, M, K, D), mask (S, M, K)[, hist]) -> actions
(S, M, act_dim) in [-1, 1], deterministic; hist (a `History`) is passed only when evaluate's
history > 0. query, the fields of hist, and in the on_policy protocol context and mask, are
numpy buffers (float32; hist.timesteps int32) that evaluate overwrites in place after the
call returns (an act_fn must not keep references to them); the fixed off_policy context and
mask are float32 device arrays."""

# A fixed tag folded into the key of the off-policy context draws.
_CONTEXT_KEY_TAG = 0x0FF


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """returns: (S, T, E) float64 undiscounted episode returns.
    lengths: (S, T, E) int64 env steps of each episode.
    task_names: the T task names; protocol: 'on_policy' or 'off_policy'.
    env_seeds: (T, E) int64 reset seed of each episode (the same for every policy seed).
    env_steps: total env steps; wall_time_s: time of the whole call (simulator creation, on
    the first call with these tasks and sizes, and the first call of act_fn, i.e. any
    compilation, included)."""

    returns: np.ndarray
    lengths: np.ndarray
    task_names: tuple[str, ...]
    protocol: str
    env_seeds: np.ndarray
    env_steps: int
    wall_time_s: float


def env_seed(seed: int, task_index: int, episode_index: int) -> int:
    """The reset seed of episode `episode_index` of task `task_index` (any policy seed)."""
    return int(np.random.SeedSequence([seed, task_index, episode_index]).generate_state(1)[0])


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _draw_windows(ds: DeviceDataset, key: jax.Array, batch_size: int, window: int, token: str):
    cb = sample_context_windows(ds, key, batch_size, window)
    return make_tokens(token, cb.observations, cb.prev_actions, cb.prev_rewards,
                       cb.prev_observations), cb.mask


def _as_device_dataset(data: Any) -> DeviceDataset:
    if isinstance(data, DeviceDataset):
        return data
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], Mapping):
        data = data[0]  # (arrays, metadata) as returned by load_datasets / store.load_dataset
    if isinstance(data, (Transitions, Mapping)):
        return make_device_dataset(data)
    raise TypeError(f"context data must be a DeviceDataset, Transitions or a dict of arrays, "
                    f"got {type(data).__name__}")


def _off_policy_contexts(tasks: Sequence[TaskSpec], context_data: Mapping[str, Any] | None,
                         num_seeds: int, num_episodes: int, window: int, seed: int,
                         obs_dim: int, act_dim: int, token: str
                         ) -> tuple[jax.Array, jax.Array]:
    """(S, M, K, D) tokens and (S, M, K) mask: S*E windows per task from one key per task."""
    if context_data is None:
        raise ValueError("the off_policy protocol needs context_data: {task name: test data}")
    missing = [t.name for t in tasks if t.name not in context_data]
    if missing:
        raise ValueError(f"context_data has no entry for task(s) {missing}; "
                         f"it has {sorted(context_data)}")
    base = jax.random.fold_in(jax.random.key(seed), _CONTEXT_KEY_TAG)
    tokens, masks = [], []
    for t, task in enumerate(tasks):
        ds = _as_device_dataset(context_data[task.name])
        d_obs = ds.transitions.observations.shape[-1]
        d_act = ds.transitions.actions.shape[-1]
        if (d_obs, d_act) != (obs_dim, act_dim):
            raise ValueError(f"context data of {task.name!r} has obs/act dims {(d_obs, d_act)}, "
                             f"the env has {(obs_dim, act_dim)}")
        if int(ds.size) < 1:
            raise ValueError(f"context data of {task.name!r} is empty")
        tok, mask = _draw_windows(ds, jax.random.fold_in(base, t), num_seeds * num_episodes,
                                  window, token)
        tokens.append(tok.reshape(num_seeds, num_episodes, window, tok.shape[-1]))
        masks.append(mask.reshape(num_seeds, num_episodes, window))
    # (S, T*E, ...) with env m = t*E + e.
    return jnp.concatenate(tokens, axis=1), jnp.concatenate(masks, axis=1)


def make_simulators(tasks: Sequence[TaskSpec], num_seeds: int, num_episodes: int
                    ) -> BatchedEnvs:
    """The S*T*E simulators of `evaluate` (env i = s*M + t*E + e runs task t). Allocating
    them costs ~1 ms each (Hopper's MjData arena), as much as ~15 env steps; a caller that
    evaluates the same tasks and sizes again and again (a training run) makes them once and
    passes them as `evaluate(..., simulators=)`: every evaluate resets all of them."""
    env_tasks = np.tile(np.repeat(np.arange(len(tasks)), num_episodes), num_seeds)
    return BatchedEnvs(tasks, env_tasks)


def _check_params(params: Any, num_seeds: int) -> None:
    for leaf in jax.tree.leaves(params):
        shape = np.shape(leaf)
        if not shape or shape[0] != num_seeds:
            raise ValueError(f"params need a leading seed axis of size {num_seeds}; "
                             f"found a leaf of shape {shape}")


def evaluate(tasks: Sequence[TaskSpec], act_fn: ActFn, params: Any, num_seeds: int,
             window: int, protocol: str, num_episodes: int, seed: int,
             max_steps: int | None = None,
             context_data: Mapping[str, Any] | None = None,
             history: int = 0, task_features: np.ndarray | None = None,
             simulators: BatchedEnvs | None = None, token: str = "state") -> EvalResult:
    """Runs num_episodes deterministic episodes per task and policy seed (module doc).

    tasks: the T tasks, one env family; simulated as ``task.make_env()`` would be.
    act_fn: see ``ActFn``; called once per env step on all S*M envs, finished ones included
        (their actions are ignored). Pass an already-jitted function that vmaps over seeds.
    params: pytree whose leaves have a leading axis of size num_seeds.
    window: K; protocol: 'on_policy' or 'off_policy'.
    seed: env reset seeds (``env_seed``) and the off-policy context draws.
    max_steps: cut episodes after this many steps (None: the env's own time limit only).
    context_data: off_policy only: {task name: DeviceDataset | Transitions | dict of arrays
        | (arrays, metadata)} of that task's test (unseen-checkpoint) data.
    history: H; > 0 passes the env's own last H steps to act_fn as a fifth argument
        (``History``, module doc); 0 (default) calls act_fn with four arguments.
    task_features: (T, F) features of the true tasks, for a task-conditioned (oracle) policy:
        act_fn then also gets the keyword ``task`` (S, M, F).
    simulators: `make_simulators(tasks, num_seeds, num_episodes)` to reuse (None: made here).
    token: what a token holds, 'state' or 'transition' (module doc, `data.tokens`).
    An episode ends at terminated, truncated or max_steps; finished envs are not stepped.
    """
    t0 = time.perf_counter()
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {PROTOCOLS}")
    tasks = list(tasks)
    if not tasks:
        raise ValueError("evaluate needs at least one task")
    for name, v in (("num_seeds", num_seeds), ("window", window), ("num_episodes", num_episodes)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if int(history) < 0:
        raise ValueError(f"history must be >= 0, got {history}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be None or >= 1, got {max_steps}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    _check_params(params, num_seeds)
    S, T, E, K, H = int(num_seeds), len(tasks), int(num_episodes), int(window), int(history)
    M = T * E
    limit = math.inf if max_steps is None else int(max_steps)

    # One simulator per (s, t, e); flat index i = s*M + t*E + e.
    if simulators is None:
        try:
            simulators = make_simulators(tasks, S, E)
        except ValueError as e:
            raise ValueError(f"evaluate: {e} (evaluate tasks of one family together)") from None
    elif simulators.num_envs != S * M or list(simulators.tasks) != tasks:
        raise ValueError(f"evaluate: simulators were made for {simulators.num_envs} envs of "
                         f"tasks {[t.name for t in simulators.tasks]}, this call needs "
                         f"{S * M} of {[t.name for t in tasks]}: make_simulators(tasks, "
                         f"num_seeds, num_episodes)")
    sim = simulators
    obs_dim, act_dim = sim.obs_dim, sim.act_dim
    D = token_dim(token, obs_dim, act_dim)
    transition = token == "transition"
    seeds_te = np.array([[env_seed(seed, t, e) for e in range(E)] for t in range(T)], np.int64)

    query = np.zeros((S, M, D), np.float32)
    q_flat = query.reshape(S * M, D)  # a view: the loops write into `query`
    # a_{-1} = 0 (and r_{-1}, s_{-1}): the query was zeroed
    q_flat[:, :obs_dim] = sim.reset(np.arange(S * M), np.tile(seeds_te.ravel(), S))

    if protocol == "on_policy":
        context = np.zeros((S, M, K, D), np.float32)
        mask = np.zeros((S, M, K), np.float32)
    else:
        context, mask = _off_policy_contexts(tasks, context_data, S, E, K, seed, obs_dim, act_dim,
                                             token)

    extra = {}
    if task_features is not None:
        feats = np.asarray(task_features, np.float32)
        if feats.ndim != 2 or feats.shape[0] != T:
            raise ValueError(f"task_features must be (num_tasks, F) with num_tasks={T}, got "
                             f"{feats.shape}")
        extra["task"] = np.broadcast_to(np.repeat(feats, E, axis=0)[None],
                                        (S, M, feats.shape[1])).copy()
    if H:
        hist = History(tokens=np.zeros((S, M, H, D), np.float32),
                       mask=np.zeros((S, M, H), np.float32),
                       returns_before=np.zeros((S, M, H), np.float32),
                       timesteps=np.zeros((S, M, H), np.int32))

    params = jax.device_put(params)  # once: no per-step transfer of host parameters
    returns = np.zeros(S * M, np.float64)
    lengths = np.zeros(S * M, np.int64)
    alive = np.arange(S * M)
    env_steps = 0
    expected = (S, M, act_dim)
    while len(alive):
        if protocol == "on_policy":
            context[:, :, :-1] = context[:, :, 1:]  # overlapping copies are safe in numpy
            context[:, :, -1] = query
            mask[:, :, :-1] = mask[:, :, 1:]
            mask[:, :, -1] = 1.0
        if H:
            for buf in hist:
                buf[:, :, :-1] = buf[:, :, 1:]
            hist.tokens[:, :, -1] = query
            hist.mask[:, :, -1] = 1.0
            hist.returns_before[:, :, -1] = returns.reshape(S, M)  # collected before this step
            hist.timesteps[:, :, -1] = lengths.reshape(S, M)       # steps taken so far
            actions = np.asarray(act_fn(params, query, context, mask, hist, **extra))
        else:
            actions = np.asarray(act_fn(params, query, context, mask, **extra))
        if actions.shape != expected:
            raise ValueError(f"act_fn returned actions of shape {actions.shape}, "
                             f"expected (S, M, act_dim) = {expected}")
        a_flat = actions.reshape(S * M, act_dim)
        obs, rew, terminated, truncated = sim.step(alive, a_flat[alive])
        returns[alive] += rew
        lengths[alive] += 1
        if transition:   # r_{t-1} and s_{t-1} of the next token
            q_flat[alive, obs_dim + act_dim + 1:] = q_flat[alive, :obs_dim]
            q_flat[alive, obs_dim + act_dim] = rew
        q_flat[alive, :obs_dim] = obs
        env_steps += len(alive)
        alive = alive[~(terminated | truncated | (lengths[alive] >= limit))]
        q_flat[:, obs_dim:obs_dim + act_dim] = a_flat  # a_{t-1} of the next token
    return EvalResult(returns=returns.reshape(S, T, E), lengths=lengths.reshape(S, T, E),
                      task_names=tuple(t.name for t in tasks), protocol=protocol,
                      env_seeds=seeds_te, env_steps=env_steps,
                      wall_time_s=time.perf_counter() - t0)


# ----------------------------------------------------------------------------------
# Summaries.


def _stats(per_seed: np.ndarray) -> dict:
    per_seed = np.asarray(per_seed, np.float64)
    return {"mean": float(per_seed.mean()), "std": float(per_seed.std()),
            "per_seed": per_seed.tolist()}


def summarize(result: EvalResult, train_task_names: Sequence[str] | None = None) -> dict:
    """JSON-able summary. For each task: the mean return over episodes per seed
    ('per_seed', S values), then 'mean' and 'std' (population std, ddof=0) over seeds, and
    'mean_length'. Groups ('all_tasks', and with train_task_names also 'train_tasks' /
    'unseen_tasks' when non-empty): per seed the mean of the group's per-task means, then
    mean / std over seeds. 'mean_return' / 'std_return' repeat all_tasks' mean / std.

    {"protocol", "num_seeds", "num_episodes", "env_steps", "wall_time_s",
     "tasks": {name: {"mean", "std", "per_seed", "mean_length"}},
     "all_tasks": {"mean", "std", "per_seed"}, ["train_tasks": ..., "unseen_tasks": ...],
     "mean_return", "std_return"}
    """
    returns = np.asarray(result.returns, np.float64)
    task_means = returns.mean(axis=2)  # (S, T)
    names = list(result.task_names)
    tasks = {}
    for t, name in enumerate(names):
        tasks[name] = {**_stats(task_means[:, t]),
                       "mean_length": float(np.mean(result.lengths[:, t]))}
    out = {"protocol": result.protocol, "num_seeds": int(returns.shape[0]),
           "num_episodes": int(returns.shape[2]), "env_steps": int(result.env_steps),
           "wall_time_s": float(result.wall_time_s), "tasks": tasks,
           "all_tasks": _stats(task_means.mean(axis=1))}
    if train_task_names is not None:
        train = set(train_task_names)
        for group, sel in (("train_tasks", [n in train for n in names]),
                           ("unseen_tasks", [n not in train for n in names])):
            if any(sel):
                out[group] = _stats(task_means[:, np.asarray(sel)].mean(axis=1))
    out["mean_return"] = out["all_tasks"]["mean"]
    out["std_return"] = out["all_tasks"]["std"]
    return out


_GROUP_ROWS = (("train_tasks", "train tasks (avg)"), ("unseen_tasks", "unseen tasks (avg)"),
               ("all_tasks", "all tasks (avg)"))


def format_table(summaries: Mapping[str, Mapping[str, Any]], precision: int = 1) -> str:
    """Markdown table: rows = tasks (then the group averages), columns = protocols, cells
    'mean ± std' over seeds ('-' where a protocol lacks the row)."""
    protocols = list(summaries)
    names: list[str] = []
    for s in summaries.values():
        names += [n for n in s["tasks"] if n not in names]

    def cell(entry):
        return "-" if entry is None else f"{entry['mean']:.{precision}f} ± {entry['std']:.{precision}f}"

    lines = ["| task | " + " | ".join(protocols) + " |",
             "|---|" + "---|" * len(protocols)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(cell(summaries[p]["tasks"].get(n))
                                               for p in protocols) + " |")
    for key, label in _GROUP_ROWS:
        if any(key in summaries[p] for p in protocols):
            lines.append(f"| {label} | " + " | ".join(cell(summaries[p].get(key))
                                                      for p in protocols) + " |")
    return "\n".join(lines)
