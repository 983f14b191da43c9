"""Typed, documented configuration (the size presets are `reda_jax.presets`).

Every field is documented where it is declared. Configs are frozen dataclasses, hashable,
so they can be closed over by jitted factories; `to_dict` gives the JSON saved in each run.

Length: every config section of every method in one module, each field with its
docstring, so that one file lists every knob a run's config.json holds (and `--set` can
reach); splitting it per method would scatter that one reference.
"""
from __future__ import annotations

import ast
import dataclasses
import json
from typing import Any, Mapping


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
    network_init: str = "lecun"
    """Initialisation of the actor's and critics' layers (reda_jax.networks.mlp.NETWORK_INITS):
    'lecun' = Flax's default (lecun_normal kernels, zero biases); 'pytorch' = PyTorch's
    nn.Linear default (kernels and biases U(+-1/sqrt(fan_in))), as in PyTorch SAC code."""


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


TASK_MODELS = ("separate", "pooled")


@dataclasses.dataclass(frozen=True)
class DynamicsConfig:
    """Stage 1: per-task Gaussian ensembles on the state change, one shared reward model
    (paper Section 3.2, Eq. 4, Appendix B.5)."""

    num_models: int = 3
    """Ensemble members per training task (paper B.5: 3; `--num_models`)."""
    num_elites: int = 0
    """Members that predict: the `num_elites` best on holdout MSE (MBPO / MOPO: 5 of 7).
    0: every member (the paper uses all 3). Training is unchanged: every member trains."""
    hidden_dims: tuple[int, ...] = (200, 200, 200)
    """Hidden widths of each member, swish activations (paper B.5: 3x200)."""
    learning_rate: float = 1e-3
    """Adam learning rate (paper B.5: 1e-3)."""
    weight_decay: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 1e-4)
    """Decoupled weight decay per layer, hidden layers then output layer (reference code /
    MOPO; the paper only says "similar to MOPO"). Its length must be len(hidden_dims) + 1."""
    batch_size: int = 2048
    """Transitions per gradient step and member (paper B.5: 2048)."""
    holdout_fraction: float = 0.1
    """Share of each task's transitions held out for early stopping (reference: 10%)."""
    max_holdout: int = 1000
    """Upper bound on the holdout size per task (reference code: 1000)."""
    max_epochs: int = 200
    """Upper bound on training epochs (reference code: 200)."""
    patience: int = 10
    """Stop after this many epochs in which no member improved its holdout loss
    (reference code: 10)."""
    improvement_threshold: float = 0.01
    """A member improves when its holdout loss falls below (1 - threshold) x its best so
    far (MOPO's relative 1% test; the reference code's test never fires, see fidelity)."""
    init_max_log_std: float = 0.25
    """Initial learned upper bound of the log standard deviation (reference code: 0.25)."""
    init_min_log_std: float = -5.0
    """Initial learned lower bound of the log standard deviation (reference code: -5)."""
    log_std_bound_coef: float = 0.01
    """Weight of the penalty (max_bound - min_bound) that keeps the learned log-std bounds
    tight (MBPO/MOPO: 0.01; the reference code does not apply it)."""
    reward_hidden_dims: tuple[int, ...] = (200, 200, 200)
    """Hidden widths of the shared reward model (paper: "learned in a similar supervised
    way"; same shape as a dynamics member)."""
    task_models: str = "separate"
    """'separate': one ensemble per training task, each fitted to its own task's data (the
    paper, Section 3.2); 'pooled': ONE ensemble fitted to every training task's data with a
    one-hot of the task appended to its input, task k's model being that ensemble given
    task k (not the paper: a test of whether separate ensembles' own errors are what the
    encoder learns; docs/notebook.md, 2026-12-02)."""

    @property
    def predicting_members(self) -> int:
        """Members whose predictions the rest of the pipeline sees (elites, or all)."""
        return self.num_elites or self.num_models

    def __post_init__(self):
        if len(self.weight_decay) != len(self.hidden_dims) + 1:
            raise ValueError(f"weight_decay needs {len(self.hidden_dims) + 1} values "
                             f"(hidden layers + output), got {len(self.weight_decay)}")
        if self.num_models < 1:
            raise ValueError(f"num_models must be >= 1, got {self.num_models}")
        if not 0 <= self.num_elites <= self.num_models:
            raise ValueError(f"num_elites must be in [0, num_models={self.num_models}], got "
                             f"{self.num_elites}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.task_models not in TASK_MODELS:
            raise ValueError(f"task_models must be one of {TASK_MODELS}, got "
                             f"{self.task_models!r}")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The context encoder phi(z | x) (paper Section 3.3, Appendix B.5)."""

    embed_dim: int = 64
    """Transformer embedding width (paper B.5: 64)."""
    num_layers: int = 1
    """Attention layers (paper B.5: 1)."""
    num_heads: int = 1
    """Attention heads (paper B.5: 1)."""
    ff_dim: int = 256
    """Hidden width of the feed-forward block (paper: silent; reference: PyTorch's 2048)."""
    z_dim: int = 8
    """Task representation size (paper B.5: 8)."""
    z_squash: str = "none"
    """What bounds z: 'none' (a linear head; paper: silent) or 'tanh' (z in (-1, 1)^z_dim, the
    reference code's decoder, with z_dim 2). With 'tanh' every InfoNCE score is bounded by
    z_dim / temperature."""
    positional_encoding: str = "learned"
    """'learned' (one vector per window position) or 'none' (reference code: none)."""
    dropout: float = 0.0
    """Dropout rate in training (reference code: 0.1, and never switched off)."""
    learning_rate: float = 3e-4
    """Adam learning rate (paper B.5: 3e-4)."""
    batch_size: int = 256
    """Context windows per task and update (paper B.5: 256)."""
    temperature: float = 1.0
    """Divides the inner-product scores of InfoNCE (paper Eq. 2: 1, a plain inner product)."""

    def __post_init__(self):
        if self.positional_encoding not in ("learned", "none"):
            raise ValueError(f"positional_encoding must be 'learned' or 'none', got "
                             f"{self.positional_encoding!r}")
        if self.z_dim < 1:
            raise ValueError(f"z_dim must be >= 1, got {self.z_dim}")
        if self.z_squash not in ("none", "tanh"):
            raise ValueError(f"z_squash must be 'none' or 'tanh', got {self.z_squash!r}")


AUGMENTATIONS = ("adversarial", "random", "none")
ROLLOUT_STARTS = ("joint", "own")
START_TOKENS = ("real", "masked")
MODEL_TRANSITIONS = ("sample", "mean")
ADVERSARY_REWARDS = ("paper", "reference")
ROLLOUT_PHYSICS = ("models", "simulator")


@dataclasses.dataclass(frozen=True)
class RepresentationConfig:
    """Stage 2: adversarial data augmentation and contrastive encoder training
    (paper Algorithm 1 lines 5-16, Eq. 5-7)."""

    augmentation: str = "adversarial"
    """'adversarial' (ReDA), 'random' (w/o adv: uniform random rollout policy) or 'none'
    (w/o model: the encoder learns from real windows only)."""
    num_epochs: int = 1000
    """K_c: alternations of rollout, adversary update and encoder update (paper B.5:
    1000 epochs; reference code: 150)."""
    encoder_updates: int = 1000
    """Encoder gradient steps per epoch (paper B.5: 1000 steps per epoch)."""
    adversary_updates: int = 250
    """Adversary SAC steps per epoch (reference code: 250 per adversary round)."""
    rollout_batch: int = 2000
    """Branch rollouts per task model per epoch (paper B.5: 2000 per model)."""
    horizon: int = 3
    """Rollout length h (reference code: 3, its context length; paper: silent)."""
    lambda1: float = 1.0
    """Weight of the uncertainty penalty u(s, a) in Eq. 6 (paper: 1; w/o UP: 0)."""
    lambda2: float = 1.0
    """Weight of the learned task reward in Eq. 6 (paper: 1; w/o TC: 0)."""
    real_fraction: float = 0.5
    """Share of real (vs model-generated) windows in each encoder batch (reference: 1:1)."""
    buffer_epochs: int = 40
    """Model rollouts kept per task = buffer_epochs x rollout_batch (reference: 250k
    windows, ~41 epochs of rollouts)."""
    adversary: SACConfig = SACConfig()
    """The adversarial policy pi_a(a|s): SAC, 2x256, shared by all tasks (paper: the same
    MLP as the meta-policy without z)."""
    rollout_start: str = "joint"
    """Where task k's branch rollouts start: 'joint' (states of the joint dataset of all
    training tasks: paper Algorithm 1, reference code) or 'own' (task k's own data)."""
    start_token: str = "real"
    """The real start token of a model window the encoder trains on: 'real' (kept, as the
    reference code) or 'masked' (with 'joint' starts it is often another task's real token
    labelled with task k: a label leak or a contradiction). Adversary scoring keeps it."""
    model_transition: str = "sample"
    """A rollout's next state: 'sample' (a draw from one random member's Gaussian, as
    MOPO and the reference code) or 'mean' (that member's mean)."""
    uncertainty_quantile: float = 1.0
    """Model windows kept for the encoder: those whose largest u(s, a) so far lies at or
    below this quantile of the epoch's u over each task's valid rollout steps (1.0: all, as
    the paper and reference code; 0.5: the more certain half of the steps)."""
    adversary_reward: str = "paper"
    """How the adversary learns: 'paper' (Eq. 5 under the min of Eq. 3: its rollouts in task
    k's own model, rewarded for lowering task k's score, r = R_k(z_t) - R_k(z_{t+1})) or
    'reference' (the public code: its rollouts in another task j's model, j != k drawn per
    rollout, rewarded for raising task k's score, r = R_k(z_{t+1}) - R_k(z_t): it learns
    to make the other tasks' physics look like task k). Either way the encoder's model
    windows are its rollouts in task k's own model, labelled k; lambda1, lambda2 apply."""
    rollout_physics: str = "models"
    """What steps the branch rollouts: 'models' (stage 1's task dynamics models: the paper)
    or 'simulator' (each task's real physics, MuJoCo XLA inside the jitted epoch, needs the
    `mjx` extra; a control, not the paper: it isolates the augmentation, adversary
    included, from the models' errors). With 'simulator' the step's uncertainty
    is 0 (lambda1's term vanishes and uncertainty_quantile keeps every window); the task
    reward (lambda2) still comes from stage 1's reward model, which stage 1 still trains,
    so a run can reuse the default's stage 1."""

    def __post_init__(self):
        for field, allowed in (("rollout_start", ROLLOUT_STARTS), ("start_token", START_TOKENS),
                               ("model_transition", MODEL_TRANSITIONS),
                               ("adversary_reward", ADVERSARY_REWARDS),
                               ("rollout_physics", ROLLOUT_PHYSICS)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"{field} must be one of {allowed}, got "
                                 f"{getattr(self, field)!r}")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got "
                             f"{self.augmentation!r}")
        if not 0.0 < self.uncertainty_quantile <= 1.0:
            raise ValueError(f"uncertainty_quantile must be in (0, 1], got "
                             f"{self.uncertainty_quantile}")
        if not 0.0 <= self.real_fraction <= 1.0:
            raise ValueError(f"real_fraction must be in [0, 1], got {self.real_fraction}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")


@dataclasses.dataclass(frozen=True)
class MetaPolicyConfig:
    """Stage 3: the meta-policy pi(a|s,z), SAC with a behavior-cloning term
    (paper Section 3.3, B.5)."""

    sac: SACConfig = SACConfig()
    """Actor and twin critics on (s, z) and (s, a, z), 2x256 (paper B.5)."""
    q_weight: float = 0.1
    """TD3+BC's alpha: the actor's Q term is q_weight * Q / mean|Q| (TD3+BC: 2.5). On the
    narrow single-checkpoint didactic data every weight we measured lowered the return
    (2.5: 34, 1: 50, 0.25: 78, 0.1: 83, 0: 90; BC 90; docs/notebook.md), so the default is
    the smallest weight that keeps an RL term. Paired against 0 on every SAC+BC method (5
    seeds x 2 collections): 0 helps the Oracle (+6.6) and costs ReDA (-8.9) and FOCAL (-7.4)
    on-policy; on hopper 0 costs the Oracle 1%."""
    bc_weight: float = 1.0
    """Weight of the behavior-cloning squared error (reference code: 1.0)."""
    bc_error: str = "raw"
    """The SAC+BC actor's BC error: 'raw' (sum over action dimensions of (a - a_data)^2, as
    TD3+BC and the reference code) or 'standardized' (each dimension divided by the training
    data's action variance, floored at std 1e-3, so that the BC term, like the Q term under
    TD3+BC's 1 / mean|Q|, does not depend on the data's scale: single-policy data whose
    actions span a few hundredths of the range make the raw term ~1000x weaker than on
    D4RL-like data). Paired on the didactic data (5 seeds x 2 collections): +9.3 for the
    Oracle, -16.8 on-policy for ReDA; hence not the default (docs/results.md)."""
    clip_td_target: bool = True
    """Clip TD targets to the range any return can take given the training data's rewards,
    [min(0, r_min), max(0, r_max)] / (1 - gamma) (`algos.sac.value_bounds`); the reference
    code clips to the fixed [-10, 1000]. Guards the critics against running away on narrow
    data (docs/fidelity.md)."""
    actor_entropy: bool = True
    """Keep SAC's alpha * log pi term in the actor's loss (the reference code drops it)."""
    bc_on_mean: bool = True
    """The BC error is that of the deterministic action tanh(mu(s, z)) (as TD3+BC's
    deterministic actor) instead of the sampled a~ (the reference code: a~, which leaves the
    mean fitted loosely under the entropy bonus; on the didactic data it cost ReDA 10-34
    points of task-1 return, docs/notebook.md)."""
    context_source: str = "independent"
    """Where the z of a training transition comes from: 'transition' (the window that ends
    at the transition: its query is (s_t, a_{t-1}); the reference code's chunks) or
    'independent' (another window of the same task drawn independently, z' = z, as FOCAL
    samples its context; z then carries only what all of the task's windows share)."""
    normalize_states: bool = True
    """Standardise the policy's and critics' state input by the training data's mean and std
    (all training tasks pooled), as TD3+BC does; z is left as the encoder gives it. The
    context encoder always reads raw tokens. Without it, ReDA's z (|z| ~2, spread ~0.6 within
    a task) swamps InvertedPendulum's small states and the task-1 policy fell to ~45 on the
    didactic data; with it, 94 (docs/notebook.md). The reference code does not normalise."""
    acting_query: str = "window"
    """The encoder's query when the policy acts: 'current' (the agent's current token
    (s_t, a_{t-1}); in the off-policy protocol it is not part of the fixed context window)
    or 'window' (the context window's newest token, as in every window the encoder and
    stage 3 train on; z is then a function of the window alone). Encoders that ignore the
    query (FOCAL, CORRO) are unaffected; on-policy both coincide."""
    oracle_code: str = "standardized"
    """`oracle` only: its task code z, 'multiplier' (the task's multiplier itself) or
    'standardized' (the multiplier standardised by the training tasks' mean and std, so
    gravity x1 / x2 become -1 / +1, and unseen multipliers interpolate and extrapolate on
    the same scale). On the didactic data, same data and seeds, the standardised code
    lifted the oracle's task-1 return from 72.0 / 70.7 to 75.0 / 82.2 (collections 0 / 1,
    5 seeds each; docs/notebook.md)."""
    num_epochs: int = 1000
    """Epochs (paper B.5: 1000)."""
    updates_per_epoch: int = 1000
    """Gradient steps per epoch (paper B.5: 1000)."""
    eval_every: int = 50
    """Evaluate both protocols every this many epochs (and after the last)."""

    def __post_init__(self):
        if self.context_source not in CONTEXT_SOURCES:
            raise ValueError(f"context_source must be one of {CONTEXT_SOURCES}, got "
                             f"{self.context_source!r}")
        if self.acting_query not in ACTING_QUERIES:
            raise ValueError(f"acting_query must be one of {ACTING_QUERIES}, got "
                             f"{self.acting_query!r}")
        if self.oracle_code not in ORACLE_CODES:
            raise ValueError(f"oracle_code must be one of {ORACLE_CODES}, got "
                             f"{self.oracle_code!r}")
        if self.bc_error not in BC_ERRORS:
            raise ValueError(f"bc_error must be one of {BC_ERRORS}, got {self.bc_error!r}")


CONTEXT_SOURCES = ("transition", "independent")
ACTING_QUERIES = ("current", "window")
TOKENS = ("state", "transition")
ORACLE_CODES = ("multiplier", "standardized")
BC_ERRORS = ("raw", "standardized")

METHOD_BUILDERS = {
    "reda": "reda_jax.algos.reda:reda_method",
    "om_sac": "reda_jax.baselines.offline_meta:om_sac_method",
    "om_bc": "reda_jax.baselines.offline_meta:om_bc_method",
    "focal": "reda_jax.baselines.focal:focal_method",
    "corro": "reda_jax.baselines.corro:corro_method",
    "prompt_dt": "reda_jax.baselines.prompt_dt:prompt_dt_method",
    "bc": "reda_jax.baselines.sanity:bc_method",
    "oracle": "reda_jax.baselines.sanity:oracle_method",
}
"""The method registry: name -> 'module:builder', the builder (`reda_jax.methods.MethodInputs`
-> `reda_jax.methods.Method`) imported only when a run uses it. Adding a method is one
module with its builder and one line here."""

ALGOS = tuple(METHOD_BUILDERS)
"""Methods; `bc` (behavior cloning without context) and `oracle` (stage 3's learner given the
true task's multiplier instead of z) are the sanity floor and ceiling of every table."""


@dataclasses.dataclass(frozen=True)
class FocalConfig:
    """FOCAL's context encoder and distance-metric loss (FOCAL-ICLR code, reference s.1)."""

    hidden_dims: tuple[int, ...] = (200, 200, 200)
    """Hidden widths of the per-transition MLP (FOCAL: 3x200, ReLU)."""
    z_dim: int = 20
    """Task representation size (FOCAL: latent_size 20, tanh output)."""
    learning_rate: float = 3e-4
    """Adam learning rate of the encoder (FOCAL: 3e-4)."""
    contexts_per_task: int = 16
    """Context windows per task and update; all T * contexts_per_task windows are paired."""
    loss_weight: float = 10.0
    """z_loss_weight (FOCAL-ICLR: 10)."""
    positive_eps: float = 1e-3
    """Inside the square root of a positive pair's term sqrt(D + eps) (FOCAL: 1e-3)."""
    negative_eps: float = 0.1
    """Added to D in a negative pair's term 1 / (D + eps) (FOCAL: 100 * 1e-3)."""
    num_epochs: int = 100
    """Encoder training epochs (stage 2)."""
    updates_per_epoch: int = 1000
    """Encoder gradient steps per epoch."""


@dataclasses.dataclass(frozen=True)
class CorroConfig:
    """CORRO's bi-level encoder, negative generator and InfoNCE (PKU-RL/CORRO, reference s.2)."""

    hidden_dims: tuple[int, ...] = (128, 128)
    """Hidden widths of the transition encoder E1 (CORRO hopper/walker: 2x128)."""
    z_dim: int = 40
    """Task representation size, L2-normalised (CORRO hopper: 40)."""
    negatives: str = "generative"
    """'generative' (CVAE decoder with z ~ N(0, I)) or 'noise' (s' + Gaussian noise, the
    dynamics analogue of CORRO's reward randomisation)."""
    noise_std: float = 0.5
    """Std of the 'noise' negatives, in units of each dimension's std of s' - s in the data."""
    num_negatives: int = 16
    """Negatives per query, sharing the query's (s, a) (CORRO: 16)."""
    temperature: float = 0.1
    """InfoNCE temperature on cosine similarities (CORRO: 0.1)."""
    batch_size: int = 64
    """Positive pairs per update (CORRO: 64)."""
    learning_rate: float = 3e-4
    """Adam learning rate of E1 and of the CVAE (CORRO: 3e-4)."""
    num_epochs: int = 100
    """E1 training epochs (stage 2)."""
    updates_per_epoch: int = 1000
    """E1 gradient steps per epoch."""
    cvae_hidden: int = 128
    """The CVAE's single hidden layer, encoder and decoder (CORRO: 128)."""
    cvae_latent: int = 64
    """The CVAE latent size (CORRO hopper: 64)."""
    cvae_kl_weight: float = 0.2
    """Weight of KL(q || N(0, I)) in the CVAE loss (CORRO: 0.2)."""
    cvae_batch_size: int = 128
    """CVAE batch (CORRO: 128)."""
    cvae_epochs: int = 20
    """CVAE training epochs (stage 1; CORRO: 100 passes over the data)."""
    cvae_updates_per_epoch: int = 1000
    """CVAE gradient steps per epoch."""

    def __post_init__(self):
        if self.negatives not in ("generative", "noise"):
            raise ValueError(f"negatives must be 'generative' or 'noise', got {self.negatives!r}")


@dataclasses.dataclass(frozen=True)
class PromptDTConfig:
    """Prompt-DT: a GPT-style decision transformer with a trajectory prompt (mxu34/prompt-dt,
    reference s.3)."""

    embed_dim: int = 128
    """Token embedding width (Prompt-DT: 128)."""
    num_layers: int = 3
    """Transformer blocks (Prompt-DT: 3)."""
    num_heads: int = 1
    """Attention heads (Prompt-DT: 1)."""
    ff_dim: int = 512
    """Feed-forward width (Prompt-DT: n_inner 512, ReLU)."""
    dropout: float = 0.1
    """Residual, attention and embedding dropout in training (Prompt-DT: 0.1)."""
    history: int = 20
    """K_dt: steps of the agent's own history the model reads (Prompt-DT: 20)."""
    max_timestep: int = 1000
    """Size of the timestep embedding table (Prompt-DT: 1000); larger steps are clipped."""
    rtg_scale: float = 1000.0
    """Returns-to-go are divided by this (Prompt-DT: 500-1000 by task)."""
    learning_rate: float = 1e-4
    """AdamW learning rate (Prompt-DT: 1e-4)."""
    weight_decay: float = 1e-4
    """AdamW weight decay (Prompt-DT: 1e-4)."""
    warmup_steps: int = 10_000
    """Linear learning-rate warm-up (Prompt-DT: 10k)."""
    grad_clip: float = 0.25
    """Global gradient-norm clip (Prompt-DT: 0.25)."""
    segments_per_task: int = 16
    """Training segments per task and update (Prompt-DT: 16)."""
    num_epochs: int = 1000
    """Training epochs (replaces stage 3 for this method)."""
    updates_per_epoch: int = 1000
    """Gradient steps per epoch."""
    eval_every: int = 50
    """Evaluate both protocols every this many epochs (and after the last)."""


DEFAULT_NUM_MODELS = DynamicsConfig().num_models
"""The ensemble size of the main runs (Table 5 varies it; run names carry any other)."""

PROTOCOLS = ("on_policy", "off_policy")
"""The evaluation protocols (paper Section 5): the context is the policy's own transitions, or
windows of the unseen checkpoints' data."""


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation in the real simulator (paper Section 5.2)."""

    num_episodes: int = 5
    """Deterministic episodes per task, protocol and seed (reference code: 5)."""
    max_steps: int | None = None
    """Cut episodes after this many steps; None = the environment's time limit."""
    seed: int = 12345
    """Seed of the evaluation environments and of the off-policy context draws."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A whole ReDA run (or ablation) on one task set and checkpoint group."""

    task_set: str = "hopper-gravity"
    """Task set name (reda_jax.envs.TASK_SETS)."""
    num_checkpoints: int = 1
    """Training data from 1, 3 or 5 behavior checkpoints (paper: 1 / 3 / 5)."""
    algo: str = "reda"
    """Method: one of ALGOS. Context-based baselines share stage 3 (SAC+BC, or BC alone for
    om_bc) and differ in how the encoder is trained; prompt_dt replaces stage 3."""
    num_seeds: int = 5
    """Independent seeds, a vmapped leading axis of every learner (paper: 5)."""
    seed: int = 0
    """Base seed; seed s of the run uses key fold_in(key(seed), s)."""
    window: int = 3
    """K: tokens per context window, one setting for the whole protocol: every method's
    encoder (ReDA's, FOCAL's, CORRO's, the offline meta baselines'), Prompt-DT's prompt, stage
    3's training windows and both evaluation protocols read K-token windows (paper: silent;
    reference code: 3). What a token holds is `token`."""
    token: str = "state"
    """What one context token holds, for the whole protocol like `window` (`data.tokens`):
    'state' (s_t, a_{t-1}), the reference code's context element, or 'transition' (s_t,
    a_{t-1}, r_{t-1}, s_{t-1}), the transition that led to s_t, so that a window holds K
    transitions with their rewards (zeros before an episode's first step)."""
    dynamics: DynamicsConfig = DynamicsConfig()
    encoder: EncoderConfig = EncoderConfig()
    representation: RepresentationConfig = RepresentationConfig()
    meta: MetaPolicyConfig = MetaPolicyConfig()
    eval: EvalConfig = EvalConfig()
    focal: FocalConfig = FocalConfig()
    corro: CorroConfig = CorroConfig()
    prompt_dt: PromptDTConfig = PromptDTConfig()
    data_preset: str = "paper"
    """Which collection preset's datasets to train on (runs/data/<data_preset>/<task_set>)."""
    checkpoint_interval_s: float = 120.0
    """Seconds between checkpoints within a stage (a stage's end is always saved)."""

    def __post_init__(self):
        if self.num_seeds < 1:
            raise ValueError(f"num_seeds must be >= 1, got {self.num_seeds}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.token not in TOKENS:
            raise ValueError(f"token must be one of {TOKENS}, got {self.token!r}")
        if self.algo not in METHOD_BUILDERS:
            raise ValueError(f"unknown algo {self.algo!r}; valid: {', '.join(METHOD_BUILDERS)}")
        if self.num_checkpoints not in (1, 3, 5):
            raise ValueError(f"num_checkpoints must be 1, 3 or 5, got {self.num_checkpoints}")


def override(config: Any, assignment: str) -> Any:
    """`config` (a nested frozen dataclass) with one field set from 'dotted.path=value', e.g.
    'meta.q_weight=0.05' or 'eval.max_steps=None', or several fields of one section from a
    dict, e.g. "dynamics={'hidden_dims': (64, 64), 'weight_decay': (0.0, 0.0, 0.0)}". The
    value is a Python literal (a bare word is a string) and must fit the field's current
    type (an int where a float is wanted is converted); raises ValueError naming the
    unknown field or the misfit value."""
    path, sep, text = assignment.partition("=")
    if not sep or not path:
        raise ValueError(f"{assignment!r}: expected dotted.field=value")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    names = path.split(".")

    def put(obj: Any, i: int) -> Any:
        fields = {f.name for f in dataclasses.fields(obj)}
        if names[i] not in fields:
            where = ".".join(names[:i]) or type(obj).__name__
            raise ValueError(f"{path}: {where} has no field {names[i]!r}; fields: "
                             f"{', '.join(sorted(fields))}")
        old = getattr(obj, names[i])
        if i + 1 < len(names):
            if not dataclasses.is_dataclass(old):
                raise ValueError(f"{path}: {'.'.join(names[:i + 1])} is a value, not a section")
            return dataclasses.replace(obj, **{names[i]: put(old, i + 1)})
        if dataclasses.is_dataclass(old):
            if not isinstance(value, dict):
                raise ValueError(f"{path} is a section; set one of its fields, or several "
                                 f"at once with a dict, e.g. {path}={{'field': value}}")
            fields = {f.name for f in dataclasses.fields(old)}
            unknown = sorted(set(value) - fields)
            if unknown:
                raise ValueError(f"{path} has no field {unknown[0]!r}; fields: "
                                 f"{', '.join(sorted(fields))}")
            # Several fields of one section at once, validated together (e.g. hidden_dims
            # with its weight_decay, whose lengths must agree).
            new = dataclasses.replace(old, **{k: _fitted(getattr(old, k), v, f"{path}.{k}")
                                               for k, v in value.items()})
            return dataclasses.replace(obj, **{names[i]: new})
        return dataclasses.replace(obj, **{names[i]: _fitted(old, value, path)})

    return put(config, 0)


def _fitted(old: Any, value: Any, path: str) -> Any:
    """`value` for a field now holding `old`: an int where a float is wanted becomes a
    float; any other type change raises ValueError naming the field."""
    if isinstance(old, float) and type(value) is int:
        return float(value)
    if old is not None and value is not None and type(value) is not type(old):
        raise ValueError(f"{path}: {value!r} is not a {type(old).__name__} (now {old!r})")
    return value


def to_dict(config: Any) -> dict:
    """A JSON-able dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {'dotted.key': leaf value}."""
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


BEHAVIOUR_BEFORE_FIELD = {
    "meta.clip_td_target": False,
    "meta.context_source": "transition",
    "meta.acting_query": "current",
    "meta.bc_on_mean": False,
    "meta.normalize_states": False,
    "meta.oracle_code": "multiplier",
}
"""Fields whose default changed after they were added: the value that reproduces what the
code did before the field existed (a run saved without the field ran with it)."""


RENAMED_FIELDS = {"encoder.window": "window"}
"""Fields moved since (old dotted path -> new): a saved config's value counts as the new
field's, so runs saved before a move stay resumable."""


def _field_defaults() -> dict[str, Any]:
    """{'meta.acting_query': 'current', ...}: by dotted path within TrainConfig and
    CollectConfig, the JSON form of the value each field had before it existed: its
    default, or BEHAVIOUR_BEFORE_FIELD's value where the default changed since."""
    out = {}
    for cls in (TrainConfig, CollectConfig):
        out.update(flatten(json.loads(json.dumps(to_dict(cls()), default=str))))
    return {**out, **BEHAVIOUR_BEFORE_FIELD}


def differing_fields(saved: Mapping, current: Mapping) -> list[str]:
    """Dotted names where two (nested, JSON-form) config dicts differ. A field that `saved`
    lacks is no difference when its current value is what the code did before the field
    existed (its default, or BEHAVIOUR_BEFORE_FIELD's value if the default changed since),
    so old runs stay resumable at the behaviour they were made with, and only at it."""
    a, b = flatten(dict(saved)), flatten(dict(current))
    for key in list(a):
        for old, new in RENAMED_FIELDS.items():
            if key == old or key.endswith("." + old):
                moved = key[:len(key) - len(old)] + new
                if moved not in a:
                    a[moved] = a.pop(key)
    defaults = _field_defaults() if set(b) - set(a) else {}

    def added_at_default(key: str) -> bool:
        parts = key.split(".")
        return any(".".join(parts[i:]) in defaults
                   and defaults[".".join(parts[i:])] == b[key] for i in range(len(parts)))

    return sorted(k for k in set(a) | set(b)
                  if a.get(k) != b.get(k) and not (k not in a and added_at_default(k)))
