"""Speed-figure plumbing: FLOP counts that scale with scan trip counts (XLA's cost analysis
does not), the theoretical ceiling, and the refusal of rates above it."""
import math

import jax
import jax.numpy as jnp
import pytest

from reda_jax import perf


def _nested(x, outer=5, inner=3):
    def inner_body(c, _):
        return jnp.tanh(c @ c.T @ c), None

    def body(c, _):
        return jax.lax.scan(inner_body, c, None, length=inner)[0], None

    return jax.lax.scan(body, x, None, length=outer)[0]


def test_a_plain_matmul_counts_what_xla_counts():
    a, b = jnp.ones((64, 32)), jnp.ones((32, 16))
    xla = jax.jit(lambda x, y: x @ y).lower(a, b).compile().cost_analysis()
    xla = xla[0] if isinstance(xla, (list, tuple)) else xla
    assert perf.matmul_flops(lambda x, y: x @ y, a, b) == 2 * 64 * 32 * 16 == xla["flops"]


def test_nested_scans_scale_with_both_trip_counts_where_xla_counts_the_body_once():
    x = jnp.ones((8, 4))
    one_step = 2 * (2 * 8 * 4 * 8)          # (8,4)@(4,8) then (8,8)@(8,4)
    assert perf.matmul_flops(_nested, x) == 15 * one_step
    assert perf.matmul_flops(lambda y: _nested(y, 10, 3), x) == 30 * one_step
    assert perf.matmul_flops(jax.vmap(_nested), jnp.ones((7, 8, 4))) == 7 * 15 * one_step
    # XLA's own count does not grow with the trip counts: the bug this module avoids.
    c5 = jax.jit(_nested).lower(x).compile().cost_analysis()
    c10 = jax.jit(lambda y: _nested(y, 10, 3)).lower(x).compile().cost_analysis()
    get = lambda c: (c[0] if isinstance(c, (list, tuple)) else c).get("flops", 0.0)
    assert get(c10) == get(c5)


def test_a_gradient_counts_forward_and_backward_products():
    x = jnp.ones((8, 8))
    assert perf.matmul_flops(jax.grad(lambda y: (y @ y).sum()), x) == 3 * 2 * 8 ** 3


def test_cond_counts_its_larger_branch():
    x = jnp.ones((8, 8))
    f = lambda y: jax.lax.cond(y.sum() > 0, lambda z: z @ z @ z, lambda z: z @ z, y)
    assert perf.matmul_flops(f, x) == 2 * 2 * 8 ** 3


def test_cpu_ceiling_from_cores_lanes_and_clock(monkeypatch):
    avx2 = {"flags": "sse avx2 fma", "vendor_id": "GenuineIntel", "cpu family": "6",
            "cpu MHz": "2000"}
    ceiling, how = perf.cpu_ceiling(cores=2, info=avx2, max_mhz=3500)
    assert ceiling == pytest.approx(2 * 32 * 3.5e9) and "3.50 GHz" in how
    # AVX-512 doubles the lanes, except on AMD Zen 4 (family 25): 256-bit pipes.
    intel512 = dict(avx2, flags="avx2 fma avx512f")
    assert perf.cpu_ceiling(2, intel512, 3500)[0] == pytest.approx(2 * 64 * 3.5e9)
    zen4 = dict(intel512, vendor_id="AuthenticAMD", **{"cpu family": "25"})
    assert perf.cpu_ceiling(2, zen4, 3500)[0] == pytest.approx(2 * 32 * 3.5e9)
    # Only the nominal clock known: an allowance for turbo keeps it an upper bound.
    monkeypatch.setattr(perf, "_max_mhz", lambda: None)
    ceiling, how = perf.cpu_ceiling(2, avx2, None)
    assert ceiling == pytest.approx(2 * 32 * 2.0e9 * perf.TURBO_ALLOWANCE) and "nominal" in how


def test_rates_above_the_ceiling_are_refused():
    assert perf.checked_rate(1e9, 1.0, 2e9) == 1e9
    with pytest.raises(perf.AboveCeilingError, match="above the machine's ceiling"):
        perf.checked_rate(5e9, 1.0, 2e9, "stage")
    assert perf.gpu_ceiling("NVIDIA H200")[0] == pytest.approx(494.7e12)
    assert perf.gpu_ceiling("some unknown card") is None


def test_the_measured_cpu_matmul_is_below_this_machines_ceiling():
    ceiling, _ = perf.machine_ceiling()
    a = jnp.ones((512, 512))
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    times = perf.interleaved({"dot": lambda: f(a)}, repeats=3)["dot"]
    assert len(times) == 3
    assert 2 * 512 ** 3 / min(times) <= ceiling
    med, lo, hi = perf.spread(times)
    assert lo <= med <= hi and not math.isnan(med)
