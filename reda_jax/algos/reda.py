"""ReDA's three stages as pure, jittable epoch functions of ONE seed (paper Algorithm 1).

The training loop (`reda_jax.train`) vmaps every function here over a leading seed axis
and scans whole epochs; nothing here touches the host.

  stage 1  `dynamics_epoch`: one epoch of every task's Gaussian ensemble (vmapped over
           tasks) and of the reward model shared by all tasks (Eq. 4).
  stage 2  `representation_epoch`: branch rollouts of the adversary pi_a(a|s) in every
           task's ensemble, the Eq. 6 reward, `adversary_updates` SAC steps of pi_a, then
           `encoder_updates` InfoNCE steps of the context encoder on real and model windows
           labelled by the task whose model generated them (Eq. 5-7). The ablations
           swap the rollout policy for a uniform one (w/o adv) or drop the model data
           (w/o model).
  stage 3  the meta-policy, shared with the baselines: `reda_jax.algos.meta` (SAC+BC on
           the real data, z = phi(context window of the same task) held fixed).

Shapes: T training tasks, N rows per task, K window, ds/da dims, D token size
(`data.tokens`), Z = z dim.

Length: the paper's Algorithm 1 in one module (its three stages and their method builder),
so that it reads against the paper line by line; the parts it composes (ensembles,
rollouts and rewards, InfoNCE, SAC) each have their own module.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from reda_jax.algos import adversarial, contrastive, dynamics
from reda_jax.algos.dynamics_data import DynamicsData, epoch_updates, make_dynamics_data
from reda_jax.algos.sac import SACState, make_sac
from reda_jax.configs import TrainConfig
from reda_jax.data import ring
from reda_jax.data.context import DeviceDataset, sample_task_windows
from reda_jax.data.tokens import token_dim
from reda_jax.methods import Method, MethodInputs, Stage, context_method, representation_stage
from reda_jax.types import Transitions


# ----------------------------------------------------------------------------- stage 1
@flax.struct.dataclass
class ModelState:
    """dynamics: EnsembleState with a leading axis of T task ensembles (1 if pooled, see
    TaskModels); reward: EnsembleState (1 member)."""

    dynamics: Any
    reward: Any


@flax.struct.dataclass
class RepresentationState:
    """encoder: EncoderState; adversary: SACState of pi_a; adversary_buffer: Ring of
    Transitions; model_windows: Ring with a leading task axis T of (tokens (K, D), mask (K,));
    epoch: () int32."""

    encoder: Any
    adversary: SACState
    adversary_buffer: ring.Ring
    model_windows: ring.Ring
    epoch: jax.Array


class TaskModels(NamedTuple):
    """Stage 1's task dynamics models behind one interface, whichever layout
    `DynamicsConfig.task_models` chose: the EnsembleState has a leading axis of T separate
    ensembles ('separate'), or of 1 ensemble whose input ends with a one-hot of the task
    ('pooled')."""

    fns: dynamics.GaussianEnsembleFns
    pooled: bool
    num_tasks: int

    def next_state(self, state, task, obs: jax.Array, act: jax.Array
                   ) -> tuple[jax.Array, jax.Array]:
        """Task `task`'s model (an int, may be traced) at obs (..., ds), act (..., da) ->
        mean next observation, std (E, ..., ds)."""
        if self.pooled:
            one = jax.tree.map(lambda x: x[0], state)
            code = jax.nn.one_hot(task, self.num_tasks, dtype=act.dtype)
            act = jnp.concatenate([act, jnp.broadcast_to(code, act.shape[:-1] + code.shape)], -1)
        else:
            one = jax.tree.map(lambda x: x[task], state)
        return dynamics.next_state_distribution(self.fns, one, obs, act)


def make_task_models(dcfg, obs_dim: int, act_dim: int, num_tasks: int) -> TaskModels:
    """The task models of `dcfg` (a DynamicsConfig) for T = num_tasks training tasks."""
    pooled = dcfg.task_models == "pooled"
    in_dim = obs_dim + act_dim + (num_tasks if pooled else 0)
    fns = dynamics.make_gaussian_ensemble(dcfg, in_dim, obs_dim, dcfg.num_models,
                                          num_elites=dcfg.num_elites,
                                          hidden_dims=dcfg.hidden_dims)
    return TaskModels(fns, pooled, num_tasks)


class ReDA(NamedTuple):
    """The pure functions of one seed; see the module doc."""

    init_models: Callable
    dynamics_epoch: Callable
    models_converged: Callable
    init_representation: Callable
    representation_epoch: Callable
    encode_windows: Callable
    task_models: TaskModels
    reward_fns: Any
    encoder: Any
    adversary: Any


def make_reda(config: TrainConfig, obs_dim: int, act_dim: int, num_tasks: int,
              termination_fn: Callable, steps_per_dynamics_epoch: int,
              steps_per_reward_epoch: int, simulator: Callable | None = None) -> ReDA:
    """Factory closing over the static config and dimensions. simulator: with
    representation.rollout_physics 'simulator', the training tasks' real physics,
    step(task, obs (..., ds), act (..., da)) -> next_obs (`envs.mjx_physics`)."""
    dcfg, ecfg, rcfg = config.dynamics, config.encoder, config.representation
    K, T = config.window, num_tasks
    D, token = token_dim(config.token, obs_dim, act_dim), config.token
    task_models = make_task_models(dcfg, obs_dim, act_dim, T)
    dyn = task_models.fns
    rew = dynamics.make_gaussian_ensemble(dcfg, obs_dim + act_dim, 1, 1, dcfg.reward_hidden_dims)
    enc = contrastive.make_encoder_learner(ecfg, D, K)
    adv = make_sac(rcfg.adversary, obs_dim, act_dim)
    if rcfg.adversary_reward == "reference" and T < 2:
        raise ValueError("representation.adversary_reward='reference' rolls the adversary out "
                         f"in the other tasks' models and needs >= 2 training tasks, got {T}")
    use_model = rcfg.augmentation != "none"
    real_physics = rcfg.rollout_physics == "simulator"
    if real_physics and use_model and simulator is None:
        raise ValueError("representation.rollout_physics='simulator' needs the tasks' "
                         "simulator step (envs.mjx_physics.make_simulator_step)")
    adversarial_policy = rcfg.augmentation == "adversarial"

    # ------------------------------------------------------------------ stage 1
    def init_models(key, data: DynamicsData) -> ModelState:
        k_dyn, k_rew = jax.random.split(key)
        n_ens = data.inputs.shape[0]      # T separate ensembles or 1 pooled one
        dyn_state = jax.vmap(dyn.init)(jax.random.split(k_dyn, n_ens), data.inputs,
                                       data.targets, data.train_size)
        rew_state = rew.init(k_rew, data.reward_inputs, data.reward_targets,
                             data.reward_train_size)
        return ModelState(dynamics=dyn_state, reward=rew_state)

    def dynamics_epoch(state: ModelState, data: DynamicsData, key) -> tuple[ModelState, dict]:
        k_dyn, k_rew = jax.random.split(key)
        dyn_state, dyn_m = jax.vmap(
            lambda s, x, y, n, hx, hy, hn, k: dyn.train_epoch(
                s, x, y, n, hx, hy, hn, k, steps_per_dynamics_epoch))(
            state.dynamics, data.inputs, data.targets, data.train_size, data.holdout_inputs,
            data.holdout_targets, data.holdout_size, jax.random.split(k_dyn, data.inputs.shape[0]))
        rew_state, rew_m = rew.train_epoch(
            state.reward, data.reward_inputs, data.reward_targets, data.reward_train_size,
            data.reward_holdout_inputs, data.reward_holdout_targets, data.reward_holdout_size,
            k_rew, steps_per_reward_epoch)
        metrics = {f"dynamics/{k}": v for k, v in dyn_m.items()}
        metrics.update({f"reward/{k}": v for k, v in rew_m.items()})
        return ModelState(dynamics=dyn_state, reward=rew_state), metrics

    def models_converged(state: ModelState) -> jax.Array:
        return jnp.all(jax.vmap(dyn.should_stop)(state.dynamics)) & rew.should_stop(state.reward)

    # ------------------------------------------------------------------ stage 2
    capacity = rcfg.buffer_epochs * rcfg.rollout_batch * rcfg.horizon

    def init_representation(key) -> RepresentationState:
        k_enc, k_adv = jax.random.split(key)
        example_tr = Transitions(jnp.zeros(obs_dim), jnp.zeros(act_dim), jnp.zeros(()),
                                 jnp.zeros(obs_dim), jnp.zeros(()), jnp.zeros(()))
        adv_cap = capacity * T if adversarial_policy else 1
        win_cap = capacity if use_model else 1
        windows = ring.init_ring((jnp.zeros((K, D)), jnp.zeros((K,))), win_cap)
        return RepresentationState(
            encoder=enc.init(k_enc), adversary=adv.init(k_adv),
            adversary_buffer=ring.init_ring(example_tr, adv_cap),
            model_windows=jax.tree.map(lambda x: jnp.broadcast_to(x, (T,) + x.shape), windows),
            epoch=jnp.zeros((), jnp.int32))

    def encode_windows(enc_params, batch) -> tuple[jax.Array, jax.Array]:
        """z (..., Z) and weights (...) of ContextBatch windows (any leading dims)."""
        tokens, mask, query = contrastive.tokens_from_context(batch, token)
        return enc.encode(enc_params, query, tokens, mask), mask[..., -1]

    def real_windows(data: DeviceDataset, key, n: int, window: int = K):
        """n windows per task: a ContextBatch with (T, n, window, ...) arrays."""
        return sample_task_windows(data, key, n, window)

    def task_step_fn(dyn_state, task, rew_state, members, model_of_row=None):
        """A rollout step in task `task`'s model or, given model_of_row (R,) int, row r in
        task model_of_row[r]'s; with rollout_physics 'simulator' in that task's real
        physics (uncertainty 0)."""
        def step(obs, act, key):
            r_mean, _ = rew.predict(rew_state, jnp.concatenate([obs, act], -1))
            if real_physics:
                next_obs = simulator(task if model_of_row is None else model_of_row, obs, act)
                return next_obs, jnp.zeros(obs.shape[:-1], obs.dtype), r_mean[0, :, 0]
            if model_of_row is None:
                mean, std = task_models.next_state(dyn_state, task, obs, act)
            else:
                mean, std = jax.vmap(lambda j: task_models.next_state(dyn_state, j, obs, act))(
                    jnp.arange(T))                                       # (T, E, R, ds)
                row = model_of_row[None, None, :, None]
                mean = jnp.take_along_axis(mean, row, 0)[0]
                std = jnp.take_along_axis(std, row, 0)[0]
            if rcfg.model_transition == "mean":
                std = jnp.zeros_like(std)
            next_obs = dynamics.sample_next_obs(mean, std, members, key)
            return next_obs, dynamics.uncertainty(std), r_mean[0, :, 0]
        return step

    def rollouts(models: ModelState, data: DeviceDataset, adv_params, key,
                 other_models: bool = False) -> adversarial.Rollout:
        """Branch rollouts (T, R, ...): R start tokens per task model, drawn from the joint
        dataset of all training tasks (rollout_start 'joint') or from the task's own data
        ('own'), one random member per rollout row. other_models: row r of task k's
        rollouts runs in the model of a task j != k drawn per row (adversary_reward
        'reference')."""
        R = rcfg.rollout_batch

        def one_task(task, key):
            k_src, k_rows, k_mem, k_roll = jax.random.split(key, 4)
            model_of_row = ((task + jax.random.randint(k_mem, (R,), 1, T)) % T
                            if other_models else None)
            k_mem = jax.random.fold_in(k_mem, 1) if other_models else k_mem
            starts = real_windows(data, k_rows, R, window=1)            # (T, R, 1, ...)
            src = (jax.random.randint(k_src, (R,), 0, T) if rcfg.rollout_start == "joint"
                   else jnp.full((R,), task))
            pick = lambda x: x[src, jnp.arange(R), -1]
            obs0, prev0 = pick(starts.observations), pick(starts.prev_actions)
            members = jax.random.randint(k_mem, (R,), 0, dcfg.predicting_members)
            if adversarial_policy:
                policy = lambda o, k: adv.act(adv_params, o, k)
            else:
                policy = lambda o, k: jax.random.uniform(k, o.shape[:-1] + (act_dim,),
                                                         minval=-1.0, maxval=1.0)
            return adversarial.model_rollout(
                obs0, prev0, task_step_fn(models.dynamics, task, models.reward, members,
                                          model_of_row), policy,
                termination_fn, rcfg.horizon, k_roll, pick(starts.prev_rewards),
                pick(starts.prev_observations))

        return jax.vmap(one_task)(jnp.arange(T), jax.random.split(key, T))

    # (h, K): whether position p of the window ending at token j = 1..h is not token 0
    not_start_token = (jnp.arange(1, rcfg.horizon + 1)[:, None] - (K - 1)
                       + jnp.arange(K)[None, :] != 0).astype(jnp.float32)

    def rollout_scores(enc_params, roll: adversarial.Rollout, protos):
        """R(z_t) of every prefix window of every rollout: (T, R, h+1), and the windows."""
        tokens = jax.vmap(lambda r: r.tokens(token))(roll)               # (T, R, h+1, D)
        wins, masks = jax.vmap(lambda t, a: adversarial.prefix_windows(t, a, K))(
            tokens, roll.alive)                                          # (T, R, h+1, K, D)
        z = enc.encode(enc_params, wins[..., -1, :], wins, masks)        # (T, R, h+1, Z)
        task = jnp.arange(T)[:, None, None]
        return contrastive.task_score(z, protos, task, ecfg.temperature), wins, masks, z

    def representation_epoch(state: RepresentationState, models: ModelState,
                             data: DeviceDataset, key) -> tuple[RepresentationState, dict]:
        k_proto, k_roll, k_adv, k_enc = jax.random.split(key, 4)
        metrics = {}
        adversary, adv_buffer, windows = state.adversary, state.adversary_buffer, state.model_windows
        if use_model:
            z_real, w_real = encode_windows(state.encoder.params,
                                            real_windows(data, k_proto, ecfg.batch_size))
            protos = contrastive.prototypes(z_real, w_real)
            roll = rollouts(models, data, adversary.actor_params, k_roll)
            scores, wins, masks, z_model = rollout_scores(state.encoder.params, roll, protos)
            valid = roll.alive[..., :-1]                                  # (T, R, h)
            metrics.update({
                "rollout/alive_fraction": roll.alive[..., -1].mean(),
                "rollout/uncertainty": (roll.uncertainty * valid).sum() / valid.sum(),
                "rollout/task_reward": (roll.rewards * valid).sum() / valid.sum(),
                "rollout/task_id_accuracy": contrastive.task_id_accuracy(
                    z_model[:, :, -1], protos, masks[:, :, -1, -1]),
            })
            # Windows ending at tokens 1..h, labelled by the generating task.
            new_wins, new_masks = wins[:, :, 1:], masks[:, :, 1:]
            if rcfg.start_token == "masked":
                new_masks = new_masks * not_start_token
                new_wins = new_wins * not_start_token[..., None]
            new_windows = (new_wins.reshape(T, -1, K, D), new_masks.reshape(T, -1, K))
            keep = new_windows[1][..., -1]
            if rcfg.uncertainty_quantile < 1.0:
                # Window ending at token j: the largest u of steps 0..j-1 of its rollout.
                u_so_far = jax.lax.cummax(roll.uncertainty, axis=2)           # (T, R, h)
                u_valid = jnp.where(valid > 0, roll.uncertainty, jnp.nan)
                limit = jnp.nanquantile(u_valid.reshape(T, -1), rcfg.uncertainty_quantile,
                                        axis=1)                                # (T,)
                keep = keep * (u_so_far <= limit[:, None, None]).reshape(T, -1)
                metrics["rollout/kept_fraction"] = keep.sum() / jnp.maximum(
                    new_windows[1][..., -1].sum(), 1.0)
            windows = jax.vmap(ring.push)(windows, new_windows, keep)
            if adversarial_policy:
                adv_roll, adv_valid = roll, valid
                if rcfg.adversary_reward == "reference":
                    adv_roll = rollouts(models, data, adversary.actor_params,
                                        jax.random.fold_in(k_roll, 1), other_models=True)
                    adv_valid = adv_roll.alive[..., :-1]
                    r_adv = adversarial.imitation_reward(
                        rollout_scores(state.encoder.params, adv_roll, protos)[0])
                else:
                    r_adv = adversarial.adversarial_reward(scores)
                reward = adversarial.total_reward(r_adv, adv_roll.uncertainty, adv_roll.rewards,
                                                  rcfg.lambda1, rcfg.lambda2)
                flat = lambda x: x.reshape((-1,) + x.shape[3:])
                trans = Transitions(
                    observations=flat(adv_roll.observations[:, :, :-1]),
                    actions=flat(adv_roll.actions), rewards=flat(reward),
                    next_observations=flat(adv_roll.observations[:, :, 1:]),
                    terminals=flat(adv_roll.terminals), truncations=jnp.zeros_like(flat(reward)))
                adv_buffer = ring.push(adv_buffer, trans, flat(adv_valid))
                cdf = ring.sampling_cdf(adv_buffer)

                def adv_step(s, k):
                    k_b, k_u = jax.random.split(k)
                    batch, _ = ring.sample(adv_buffer, cdf, k_b, rcfg.adversary.batch_size)
                    return adv.update(s, batch, k_u)

                adversary, adv_m = jax.lax.scan(
                    adv_step, adversary, jax.random.split(k_adv, rcfg.adversary_updates))
                metrics.update({f"adversary/{k}": v for k, v in adv_m.items()})
                metrics["adversary/r_adv"] = (r_adv * adv_valid).sum() / adv_valid.sum()
                metrics["adversary/reward"] = (reward * adv_valid).sum() / adv_valid.sum()

        n_model = round(ecfg.batch_size * (1.0 - rcfg.real_fraction)) if use_model else 0
        n_real = ecfg.batch_size - n_model
        cdfs = jax.vmap(ring.sampling_cdf)(windows)

        def enc_step(s, k):
            k_real, k_model, k_u = jax.random.split(k, 3)
            tokens, mask, query = contrastive.tokens_from_context(
                real_windows(data, k_real, n_real), token)
            if n_model:
                (m_tok, m_mask), ok = jax.vmap(
                    lambda w, c, kk: ring.sample(w, c, kk, n_model))(
                    windows, cdfs, jax.random.split(k_model, T))
                tokens = jnp.concatenate([tokens, m_tok], 1)
                mask = jnp.concatenate([mask, m_mask * ok[:, None, None]], 1)
                query = jnp.concatenate([query, m_tok[:, :, -1]], 1)
            return enc.update(s, query, tokens, mask, k_u, mask[..., -1])

        encoder, enc_m = jax.lax.scan(enc_step, state.encoder,
                                      jax.random.split(k_enc, rcfg.encoder_updates))
        metrics.update({f"encoder/{k}": v for k, v in enc_m.items()})
        return RepresentationState(encoder=encoder, adversary=adversary,
                                   adversary_buffer=adv_buffer, model_windows=windows,
                                   epoch=state.epoch + 1), metrics

    return ReDA(init_models=init_models, dynamics_epoch=dynamics_epoch,
                models_converged=models_converged, init_representation=init_representation,
                representation_epoch=representation_epoch, encode_windows=encode_windows,
                task_models=task_models, reward_fns=rew, encoder=enc, adversary=adv)


def reda_method(inputs: MethodInputs) -> Method:
    """ReDA as a `Method` (registered in `configs.METHOD_BUILDERS`): stage 1 the task
    models on `make_dynamics_data`'s split (skipped by w/o model, whose stage 2 has no
    rollouts), stage 2 the adversarial augmentation and InfoNCE, stage 3 SAC+BC with the
    encoder fixed."""
    from reda_jax.algos import meta as meta_lib
    config = inputs.config
    uses_models = config.representation.augmentation != "none"
    data, updates, simulator = None, (1, 1), None
    if uses_models:
        data = make_dynamics_data(inputs.data.train_arrays, config.dynamics, config.seed)
        updates = epoch_updates(data, config.dynamics.batch_size)
        if config.representation.rollout_physics == "simulator":
            from reda_jax.envs.mjx_physics import make_simulator_step
            simulator = make_simulator_step(inputs.task_set.train_tasks)
    r = make_reda(config, inputs.obs_dim, inputs.act_dim, inputs.num_tasks,
                  inputs.termination_fn, *updates, simulator)
    learner = meta_lib.make_meta_learner(
        config.meta, inputs.obs_dim, inputs.act_dim, inputs.num_tasks, inputs.window,
        config.encoder.z_dim, token=inputs.token,
        encode=lambda frozen, trainable, q, t, m: r.encoder.encode(frozen, q, t, m),
        **inputs.stage3_stats())
    stages = []
    if uses_models:
        stages.append(Stage("dynamics", "stage 1: dynamics", r.init_models,
                            lambda state, _up, data, key: r.dynamics_epoch(state, data, key),
                            config.dynamics.max_epochs, data, converged=r.models_converged,
                            progress=("dynamics/holdout_mse",)))
    stages.append(representation_stage(r.init_representation, r.representation_epoch,
                                       config.representation.num_epochs, inputs.data.train,
                                       output=lambda rep: rep.encoder.params))
    return context_method(inputs, "reda", learner, stages)
