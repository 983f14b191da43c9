"""Evaluation of meta-policies in the real simulator (on- and off-policy protocols)."""

from reda_jax.eval.protocols import (PROTOCOLS, EvalResult, env_seed, evaluate, format_table,
                                     summarize)

__all__ = ["PROTOCOLS", "EvalResult", "env_seed", "evaluate", "format_table", "summarize"]
