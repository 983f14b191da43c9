"""One run of any method (`reda_jax.methods`): its declared stages in order, each through
the shared `stage_loop.StageLoop` (checkpoints and resume, NaN guard, metrics, timing),
then the final evaluation in the real simulator, embeddings.npz and results.json.

Every learner state has a leading seed axis S; each epoch is one jitted call of
`jax.vmap(stage.epoch)` whose body is a `lax.scan` over update steps. The stage before the
policy stage logs the encoder's task-identification accuracy each epoch where the encoder
is then final; the policy stage evaluates both protocols every `eval_every` epochs
(eval_history.jsonl). Keys follow `stage_loop.seed_keys` (a stage's index in
`metrics_log.STAGES`; read-outs have their own indices, `eval.encoders`).
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import numpy as np

from reda_jax import configs
from reda_jax.data.context import DeviceDataset
from reda_jax.data.train_data import TrainData
from reda_jax.eval import encoders, protocols
from reda_jax.eval import eval_history
from reda_jax.eval.eval_history import append_history, read_history, truncate_history
from reda_jax.method_names import method_of
from reda_jax.methods import Method, Stage, make_method, task_features
from reda_jax.run_info import write_json_atomic
from reda_jax.stage_checkpoints import resume_position
from reda_jax.stage_loop import StageLoop, epoch_keys, seed_keys
from reda_jax.validate import InputError


class Trainer:
    """Runs (or resumes) one run of `config.algo` on `data` in `workdir`; see the module
    doc. epoch_budget: see `StageLoop`."""

    def __init__(self, config: configs.TrainConfig, data: TrainData, workdir: str | os.PathLike,
                 show_progress: bool = True, log: Callable[[str], None] = print,
                 epoch_budget: int | None = None,
                 on_epoch: Callable[[str, int, int, bool], None] | None = None):
        self.config, self.data = config, data
        self.workdir = Path(workdir)
        self.log = log
        self.loop = StageLoop(self.workdir, config, show_progress, log, epoch_budget, on_epoch)
        self.num_seeds = config.num_seeds
        self.method: Method = make_method(config, data)
        m = self.method
        # Each stage's epoch function, vmapped over seeds and jitted (public:
        # experiments/harness.py and the benchmarks time exactly what a run executes).
        self.epoch_fns = {st.name: jax.jit(jax.vmap(st.epoch, in_axes=(0, 0, None, 0)),
                                           donate_argnums=0) for st in m.stages}
        if m.encode is not None:
            self._accuracy = encoders.make_accuracy_fn(m)
            self._embed = encoders.make_embed_fn(m)
        self.act_fn = jax.jit(jax.vmap(m.act))
        self.simulators = None   # protocols.make_simulators, on the first evaluation

    @property
    def final_params(self) -> tuple[Any, Any]:
        """After `run`: (frozen, trainable) encoder parameters of the final policy."""
        meta_state, frozen = self.final_state
        return frozen, self.method.trainable_params(meta_state)

    def embed(self, data: DeviceDataset, key_index: int = 0) -> np.ndarray:
        """After `run`: z (S, D, n, Z) of n = EMBEDDING_WINDOWS windows of each of the D
        datasets stacked in `data` (a DeviceDataset with a leading dataset axis)."""
        keys = epoch_keys(seed_keys(self.config.seed, self.num_seeds,
                                    encoders.EMBEDDING_KEYS), key_index)
        return np.asarray(jax.device_get(self._embed(*self.final_params, data, keys)))

    # ------------------------------------------------------------------ stages
    def init_state(self, stage: Stage):
        """The stage's initial state, seeds leading."""
        keys = seed_keys(self.config.seed, self.num_seeds, stage.index)
        return jax.jit(jax.vmap(stage.init, in_axes=(0, None)))(keys, stage.data)

    def train_stage(self, stage: Stage, upstream=None):
        """Trains (or restores, where finished) one stage that precedes the policy stage;
        upstream: the previous stage's output ({} for a first stage). The stage just before
        the policy stage logs the encoder's accuracies each epoch if the encoder is then
        final. -> the stage's final state."""
        m = self.method
        keys = seed_keys(self.config.seed, self.num_seeds, stage.index)
        epoch_fn_s = self.epoch_fns[stage.name]
        upstream = {} if upstream is None else upstream
        log_accuracy = (m.encode is not None and stage is m.stages[-2]
                        and not self.trains_encoder_in_meta())
        acc_keys = seed_keys(self.config.seed, self.num_seeds, encoders.ACCURACY_KEYS)

        def epoch_fn(state, epoch):
            state, metrics = epoch_fn_s(state, upstream, stage.data, epoch_keys(keys, epoch))
            if log_accuracy:
                acc = self._accuracy(stage.output(state), {}, self.data.train,
                                     self.data.test_train_tasks, epoch_keys(acc_keys, epoch))
                metrics = {**metrics, **{f"encoder/{k}": v for k, v in acc.items()}}
            return state, metrics

        def postfix(state, epoch, done, seeds):
            return {k.split("/")[-1]: f"{v.mean():.4g}" for k, v in seeds.items()
                    if k.endswith(stage.progress)}

        converged = None
        if stage.converged is not None:
            converged_s = jax.jit(jax.vmap(stage.converged))
            converged = lambda state: bool(np.all(converged_s(state)))
        state, _ = self.loop.run(stage.name, stage.label, f"{stage.name}_s",
                                 self.init_state(stage), stage.num_epochs, epoch_fn,
                                 converged=converged, after_epoch=postfix)
        return state

    def train_encoder_stages(self):
        """Trains (or restores) every stage before the policy stage; stages before a
        finished one are skipped (its output does not need them). -> the policy stage's
        upstream: the frozen encoder parameters ({} if there is no earlier stage)."""
        earlier = self.method.stages[:-1]
        done = [i for i, st in enumerate(earlier) if self._finished(st.name)]
        upstream = {}
        for stage in earlier[max(done, default=0):]:
            upstream = stage.output(self.train_stage(stage, upstream))
        return upstream

    def _finished(self, stage: str) -> bool:
        return ((self.workdir / "checkpoints" / stage).is_dir()
                and self.loop.store(stage).done())

    def trains_encoder_in_meta(self) -> bool:
        """Whether the policy stage trains encoder parameters too (om_sac, om_bc, corro's
        E2)."""
        policy = self.method.policy_stage
        shapes = jax.eval_shape(jax.vmap(policy.init, in_axes=(0, None)),
                                seed_keys(self.config.seed, self.num_seeds, policy.index),
                                policy.data)
        return bool(jax.tree.leaves(self.method.trainable_params(shapes)))

    def train_encoder(self) -> tuple[Any, Any]:
        """Trains only as far as the encoder is final: the stages before the policy stage,
        or the whole run where the policy stage trains encoder parameters too. ->
        (frozen, trainable) encoder parameters with a leading seed axis (what
        `eval.encoders.encoder_readout` reads)."""
        if self.method.encode is None:
            raise InputError(f"{self.config.algo!r} has no learned task representation")
        if self.trains_encoder_in_meta():
            self.run()
            return self.final_params
        return self.train_encoder_stages(), {}

    def evaluate_policy(self, meta_state, frozen, protocol: str,
                        contexts: Mapping[str, Any] | None = None) -> dict:
        """`protocols.summarize` of one protocol in the real simulator, every task of the
        set; off_policy contexts come from `contexts` ({task name: data}; default: the
        unseen-checkpoint data)."""
        ecfg, ts = self.config.eval, self.data.task_set
        params = (self.method.act_params(meta_state), frozen)  # only what acting reads
        act_fn = lambda p, *args, **kw: self.act_fn(p[0], p[1], *args, **kw)
        feats = task_features([t.multiplier for t in ts.all_tasks],
                              [t.multiplier for t in ts.train_tasks],
                              self.config.meta.oracle_code) \
            if self.method.task_conditioned else None
        if self.simulators is None:   # made once: the same tasks and sizes every time
            self.simulators = protocols.make_simulators(ts.all_tasks, self.num_seeds,
                                                         ecfg.num_episodes)
        result = protocols.evaluate(
            ts.all_tasks, act_fn, params, self.num_seeds, self.method.window, protocol,
            ecfg.num_episodes, ecfg.seed, max_steps=ecfg.max_steps,
            context_data=self.data.contexts if contexts is None else contexts,
            history=self.method.history, task_features=feats, simulators=self.simulators,
            token=self.method.token)
        return protocols.summarize(result, train_task_names=[t.name for t in ts.train_tasks])

    def evaluate(self, meta_state, frozen, epoch: int) -> dict:
        """Both protocols; appends them to eval_history.jsonl."""
        out = {p: self.evaluate_policy(meta_state, frozen, p) for p in configs.PROTOCOLS}
        append_history(self._history_path, {"epoch": epoch, **out})
        return out

    @property
    def _history_path(self) -> Path:
        return self.workdir / eval_history.FILE

    def train_policy(self, frozen):
        """The policy stage ('meta_policy'), evaluated every eval_every epochs and at its
        end; frozen: the earlier stages' encoder parameters."""
        m = self.method
        stage = m.policy_stage
        keys = seed_keys(self.config.seed, self.num_seeds, stage.index)
        epoch_fn_s = self.epoch_fns[stage.name]

        def epoch_fn(state, epoch):
            return epoch_fn_s(state, frozen, stage.data, epoch_keys(keys, epoch))

        def evaluate(state, epoch, done, seeds):
            if epoch % m.eval_every and not done:
                return None
            since = time.time()
            summary = self.evaluate(state, frozen, epoch)
            self.loop.clock("evaluation_s", since)
            return {"on": f"{summary['on_policy']['mean_return']:.0f}",
                    "off": f"{summary['off_policy']['mean_return']:.0f}"}

        state, epoch = self.loop.run(
            stage.name, stage.label, f"{stage.name}_s", self.init_state(stage),
            stage.num_epochs, epoch_fn,
            restored=lambda epoch, done: truncate_history(self._history_path, epoch),
            after_epoch=evaluate)
        history = read_history(self._history_path)
        if not history or history[-1]["epoch"] != epoch:
            self.log(f"warning: {self._history_path} lacks the final epoch {epoch} (deleted "
                     "or cut?); evaluating the final policy again")
            self.evaluate(state, frozen, epoch)
        return state

    def run(self) -> dict:
        """Runs the remaining stages; returns (and writes results.json) the final evaluation;
        writes embeddings.npz for methods with a task representation."""
        m = self.method
        position = resume_position(self.workdir)
        if position is not None:
            self.log(f"resuming from {position[0]} epoch {position[1]}")
        t0 = time.time()
        frozen = self.train_encoder_stages()
        meta_state = self.train_policy(frozen)
        self.final_state = (meta_state, frozen)   # for evaluate_policy(*final_state, ...)
        acc = self._final_encoder() if m.encode is not None else {}
        results = self._results(read_history(self._history_path)[-1], acc,
                                time.time() - t0)
        write_json_atomic(self.workdir / "results.json", results)
        self.loop.metrics.close()
        return results

    def _final_encoder(self) -> dict:
        """The final encoder's accuracies; writes embeddings.npz of every task's test data."""
        frozen, trainable = self.final_params
        keys = seed_keys(self.config.seed, self.num_seeds, encoders.ACCURACY_KEYS)
        acc = jax.device_get(self._accuracy(frozen, trainable, self.data.train,
                                            self.data.test_train_tasks, epoch_keys(keys, 0)))
        z = jax.device_get(self._embed(frozen, trainable, self.data.test_all_tasks,
                                       epoch_keys(keys, 1)))
        ts = self.data.task_set
        train_names = {t.name for t in ts.train_tasks}
        np.savez(self.workdir / "embeddings.npz", z=np.asarray(z, np.float32),
                 task_names=np.array([t.name for t in ts.all_tasks]),
                 train_task=np.array([t.name in train_names for t in ts.all_tasks]))
        return acc

    def _results(self, final: dict, acc: dict, seconds: float) -> dict:
        cfg = self.config
        return {
            "algo": cfg.algo, "method": method_label(cfg), "task_set": cfg.task_set,
            "num_checkpoints": cfg.num_checkpoints, "num_seeds": self.num_seeds,
            "seed": cfg.seed, "collection_seed": self.data.collection_seed,
            "num_models": cfg.dynamics.num_models,
            "augmentation": cfg.representation.augmentation,
            "epoch": final["epoch"],
            "protocols": {p: final[p] for p in configs.PROTOCOLS},
            "encoder_accuracy": {k: {"per_seed": np.asarray(v).tolist(),
                                     "mean": float(np.mean(v)), "std": float(np.std(v))}
                                 for k, v in acc.items()},
            "timing_s": {**self.loop.timing, "total_this_process": seconds},
        }


def method_label(config: configs.TrainConfig) -> str:
    """'reda', 'reda_wo_model', 'reda_wo_adv', 'reda_wo_up', 'reda_wo_tc' or the algo."""
    return method_of(config.algo, dataclasses.asdict(config.representation))


def results_table(results: dict) -> str:
    """Markdown: rows = tasks, columns = protocols (mean ± std over seeds)."""
    return protocols.format_table(results["protocols"])
