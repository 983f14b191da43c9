"""The encoder read-out: how well a trained context encoder tells the tasks apart, without
a policy. Shapes: T training tasks, T_all = all tasks (training tasks first), n windows per
task, Z = z size.

Every accuracy is nearest-prototype in Euclidean distance, the geometry of d(phi) (Eq. 8)
and of FOCAL's loss: a task's prototype is the mean z of n windows of its data drawn with a
key of their own, never the windows being scored. The trainer's per-epoch and final
`task_id_accuracy` use the same rule; only ReDA's `rollout/task_id_accuracy` (the
adversary's target) scores by the InfoNCE logit <z, p_j> (`contrastive.task_id_accuracy`),
which differs where prototypes differ in norm.

  train_accuracy              windows of the training data, training prototypes
  unseen_checkpoint_accuracy  windows of the training tasks' unseen checkpoints (other
                              behavior policies: the paper's off-policy contexts), training
                              prototypes; the spurious relationship lowers it
  task1_unseen_checkpoint_accuracy
                              the same, the first training task's windows only (the
                              windows d(phi) reads; the didactic's D1_test)
  linear_probe_accuracy       a linear classifier fitted on training windows, scored on the
                              unseen-checkpoint windows: whether ANY linear direction of z
                              still carries the task, where the prototypes' does not
  unseen_task_accuracy        windows of each unseen task, against the prototypes of every
                              task (each from its unseen-checkpoint data): whether unseen
                              tasks get a region of z of their own (only with unseen tasks)
  d_phi                       Eq. 8 for the first training task and its unseen checkpoint,
                              the denominator averaged over the other training tasks
  d_phi_centroid              the same without the spread terms (`spread_decomposition`)
  d_phi_median                per window: the median over the unseen-checkpoint windows of
                              task 1 of |z - p_1|^2 / mean_{j != 1} |z - p_j|^2; with two
                              tasks it is below 1 exactly when most windows are nearer task
                              1's prototype, so it agrees in sign with
                              task1_unseen_checkpoint_accuracy - 0.5

Why d(phi) and the accuracy can disagree: Eq. 8 is a ratio of mean squared distances over
all pairs, and a mean pairwise distance is |centre difference|^2 plus both clouds' spreads
(`spread_decomposition`). A wide training cloud of task 2 lowers d(phi) as a nearer centre
would, and a few test windows far out on task 1's side pull the test centre over while
most windows sit nearer task 2. The accuracy counts windows. d_phi_centroid removes the
spreads; d_phi_median also removes the outliers' pull.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from reda_jax.algos.contrastive import nearest_prototype_hits, prototypes, weighted_mean
from reda_jax.data.context import DeviceDataset, sample_task_windows, sample_transitions
from reda_jax.eval.metrics import centroid_representation_metric, mean_pairwise_sq_distance
from reda_jax.optim import apply_gradients
from reda_jax.types import ContextBatch

READOUT_KEYS = ("train_accuracy", "unseen_checkpoint_accuracy",
                "task1_unseen_checkpoint_accuracy", "linear_probe_accuracy",
                "unseen_task_accuracy", "d_phi", "d_phi_centroid", "d_phi_median")


def linear_probe_accuracy(z_fit: jax.Array, w_fit: jax.Array, z_eval: jax.Array,
                          w_eval: jax.Array, steps: int = 300, learning_rate: float = 0.1,
                          l2: float = 1e-3) -> jax.Array:
    """z_fit (T, n, Z), w_fit (T, n): windows of task t, labelled t; z_eval (T, m, Z),
    w_eval (T, m) -> (): weighted accuracy on z_eval of a multinomial logistic regression
    fitted on z_fit (features standardised by z_fit's weighted mean and std, full-batch
    Adam for `steps` steps, L2 penalty l2 on the weights, zero init: deterministic)."""
    T, _, Z = z_fit.shape
    w = w_fit.astype(jnp.float32)[..., None]
    mu = (z_fit * w).sum((0, 1)) / jnp.maximum(w.sum(), 1e-8)
    sd = jnp.sqrt((jnp.square(z_fit - mu) * w).sum((0, 1)) / jnp.maximum(w.sum(), 1e-8)) + 1e-6
    x = (z_fit - mu) / sd
    labels = jnp.broadcast_to(jnp.arange(T)[:, None], z_fit.shape[:2])

    def loss(params):
        logits = x @ params["w"] + params["b"]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return weighted_mean(ce, w_fit) + l2 * jnp.sum(jnp.square(params["w"]))

    opt = optax.adam(learning_rate)
    params = {"w": jnp.zeros((Z, T)), "b": jnp.zeros((T,))}

    def step(carry, _):
        p, s = carry
        g = jax.grad(loss)(p)
        return apply_gradients(opt, p, s, g), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    logits = ((z_eval - mu) / sd) @ params["w"] + params["b"]
    hit = (jnp.argmax(logits, -1) == jnp.arange(T)[:, None]).astype(jnp.float32)
    return weighted_mean(hit, w_eval)


def readout_from_embeddings(z_proto, w_proto, z_train, w_train, z_ckpt, w_ckpt,
                            z_all_proto=None, w_all_proto=None, z_all=None, w_all=None
                            ) -> dict[str, jax.Array]:
    """The read-out of module doc from embeddings: z_proto, z_train (T, n, Z) two samples
    of the training windows (prototypes / scored), z_ckpt (T, n, Z) the unseen-checkpoint
    windows, z_all_proto, z_all (T_all, n, Z) two samples of every task's unseen-checkpoint
    windows (None: no unseen tasks); w_* (.., n) the windows' weights. -> {READOUT_KEYS: ()}
    (unseen_task_accuracy only with z_all)."""
    T = z_train.shape[0]
    protos = prototypes(z_proto, w_proto)
    own = jnp.arange(T)[:, None]
    ckpt_hits = nearest_prototype_hits(z_ckpt, protos, own)
    out = {
        "train_accuracy": weighted_mean(nearest_prototype_hits(z_train, protos, own), w_train),
        "unseen_checkpoint_accuracy": weighted_mean(ckpt_hits, w_ckpt),
        "task1_unseen_checkpoint_accuracy": weighted_mean(ckpt_hits[0], w_ckpt[0]),
        "linear_probe_accuracy": linear_probe_accuracy(z_train, w_train, z_ckpt, w_ckpt),
    }
    if T > 1:
        z_test = z_ckpt[0]   # windows end at valid transitions: every weight is 1
        num = mean_pairwise_sq_distance(z_train[0], z_test)
        den = jnp.mean(jnp.stack([mean_pairwise_sq_distance(z_train[j], z_test)
                                  for j in range(1, T)]))
        out["d_phi"] = num / den
        out["d_phi_centroid"] = centroid_representation_metric(z_train, z_test, 0, w_train)
        d2 = jnp.sum(jnp.square(z_test[:, None, :] - protos[None]), -1)        # (n, T)
        out["d_phi_median"] = jnp.median(d2[:, 0] / d2[:, 1:].mean(-1))
    if z_all is not None and z_all.shape[0] > T:
        all_protos = prototypes(z_all_proto, w_all_proto)
        unseen = jnp.arange(z_all.shape[0])[:, None] >= T
        hits = nearest_prototype_hits(z_all, all_protos, jnp.arange(z_all.shape[0])[:, None])
        out["unseen_task_accuracy"] = weighted_mean(hits, w_all * unseen)
    return out


def encoder_readout(encode: Callable[[ContextBatch], tuple[jax.Array, jax.Array]],
                    train: DeviceDataset, unseen_checkpoints: DeviceDataset,
                    all_tasks: DeviceDataset | None, key: jax.Array, num_windows: int,
                    window: int) -> dict[str, jax.Array]:
    """One seed's read-out (module doc). encode(ContextBatch (T', n, K, ...)) -> (z (T', n,
    Z), weights (T', n)); train, unseen_checkpoints: DeviceDataset (T, ...); all_tasks:
    DeviceDataset (T_all, ...) of every task's unseen-checkpoint data, training tasks first
    (None or T_all == T: no unseen_task_accuracy). n = num_windows windows per task and
    sample, K = window. Jittable and vmappable over encoder parameters."""
    k = jax.random.split(key, 5)
    sample = lambda data, kk: encode(sample_task_windows(data, kk, num_windows, window))
    z_proto, w_proto = sample(train, k[0])
    z_train, w_train = sample(train, k[1])
    z_ckpt, w_ckpt = sample(unseen_checkpoints, k[2])
    extra = {}
    if all_tasks is not None and all_tasks.size.shape[0] > train.size.shape[0]:
        z_all_proto, w_all_proto = sample(all_tasks, k[3])
        z_all, w_all = sample(all_tasks, k[4])
        extra = dict(z_all_proto=z_all_proto, w_all_proto=w_all_proto, z_all=z_all,
                     w_all=w_all)
    return readout_from_embeddings(z_proto, w_proto, z_train, w_train, z_ckpt, w_ckpt,
                                   **extra)


MODEL_KEYS = ("model_train_accuracy", "model_unseen_checkpoint_accuracy", "model_error",
              "model_gap", "model_gap_to_error")


def model_readout(predict: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
                  train: DeviceDataset, unseen_checkpoints: DeviceDataset, key: jax.Array,
                  num_transitions: int) -> dict[str, jax.Array]:
    """Stage 1's task dynamics models read out on real transitions, n = num_transitions of
    each training task k (training data, and its unseen checkpoints' data).

    predict(obs (T, n, ds), act (T, n, da)) -> (mean, std) (T_model, E, T, n, ds): every
    task model's members' Gaussians of s' at every task's (s, a).
    -> {MODEL_KEYS: ()}:
      model_train_accuracy, model_unseen_checkpoint_accuracy: share of task k's transitions
        whose s' is likeliest (Gaussian NLL, mean over members and dims) under task k's
        ensemble: do the models themselves tell the tasks apart off their own data?
      model_error: RMS over transitions and dims of the own ensemble's mean prediction
        (members averaged) minus s', on the unseen-checkpoint transitions;
      model_gap: RMS of the other tasks' mean predictions minus the own one at the same
        (s, a): the task signal one step carries, as the models see it;
      model_gap_to_error: max over dims of gap / error (per dim): above 1 the models'
        task signal exceeds their own error in at least one dimension."""
    k_train, k_ckpt = jax.random.split(key)
    sample = lambda data, kk: jax.vmap(lambda d, k3: sample_transitions(d, k3, num_transitions))(
        data, jax.random.split(kk, data.size.shape[0]))
    T = train.size.shape[0]
    own = jnp.arange(T)[:, None]

    def task_nll(batch):
        mean, std = predict(batch.observations, batch.actions)       # (Tm, E, T, n, ds)
        z = (mean - batch.next_observations) / std
        return (jnp.square(z) + 2.0 * jnp.log(std)).mean((1, -1)), mean.mean(1)

    nll_train, _ = task_nll(sample(train, k_train))
    ckpt = sample(unseen_checkpoints, k_ckpt)
    nll_ckpt, mu = task_nll(ckpt)                                     # (Tm, T, n), (Tm, T, n, ds)
    mu_own = mu[jnp.arange(T), jnp.arange(T)]                          # (T, n, ds)
    err = jnp.sqrt(jnp.square(mu_own - ckpt.next_observations).mean((0, 1)))   # (ds,)
    other = (jnp.arange(T)[:, None] != jnp.arange(T)[None, :]).astype(jnp.float32)
    gap2 = (jnp.square(mu - mu_own[None]) * other[..., None, None]).sum((0, 1, 2)) / (
        other.sum() * mu.shape[2])                                     # (ds,)
    return {
        "model_train_accuracy": (jnp.argmin(nll_train, 0) == own).mean(),
        "model_unseen_checkpoint_accuracy": (jnp.argmin(nll_ckpt, 0) == own).mean(),
        "model_error": jnp.sqrt(jnp.mean(jnp.square(err))),
        "model_gap": jnp.sqrt(jnp.mean(gap2)),
        "model_gap_to_error": jnp.max(jnp.sqrt(gap2) / jnp.maximum(err, 1e-8)),
    }
