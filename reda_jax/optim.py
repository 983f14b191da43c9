"""One optimiser step, shared by every learner."""
from __future__ import annotations

import optax


def apply_gradients(tx: optax.GradientTransformation, params, opt_state, grads):
    """(params, opt_state) after one step of `tx` on `grads` (pytrees shaped like `params`).
    `params` reaches `tx.update`, which weight decay needs and plain Adam ignores."""
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
