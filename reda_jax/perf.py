"""Honest speed figures: FLOP counts that scale with loop trip counts, the machine's
theoretical ceiling, and interleaved repeated timings.

Why not XLA's cost analysis alone: XLA counts a while loop's body once whatever its trip
count, and a nested scan's body once per *outer* body, so the FLOPs of a scanned epoch (an
outer scan over updates holding inner scans over rollout steps or layers) cannot be read
off it. `matmul_flops` walks the jaxpr instead and multiplies every scan body by its length.

    flops = matmul_flops(jax.vmap(epoch_fn), state, data, keys)     # 2*M*N*K summed
    ceiling, how = machine_ceiling()                                 # FLOP/s, explanation
    times = interleaved({"peak": f, "stage": g}, repeats=3)          # {name: [s, s, s]}
    rate = checked_rate(flops, median(times["stage"]), ceiling)      # raises above ceiling
"""
from __future__ import annotations

import math
import os
import re
import statistics
import time
from typing import Any, Callable, Mapping

import jax

__all__ = ["matmul_flops", "machine_ceiling", "cpu_ceiling", "gpu_ceiling", "interleaved",
           "spread", "checked_rate", "AboveCeilingError"]


# ----------------------------------------------------------------------------- FLOPs
def _dot_flops(eqn) -> float:
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    out = eqn.outvars[0].aval.shape
    k = math.prod(lhs[d] for d in lhs_contract)
    return 2.0 * math.prod(out) * k


def _conv_flops(eqn) -> float:
    rhs = eqn.invars[1].aval.shape          # kernel: (out_features, in/groups, *spatial)
    out = eqn.outvars[0].aval.shape
    dn = eqn.params["dimension_numbers"]
    o_dim = dn.rhs_spec[0] if dn is not None else 0
    per_out = math.prod(rhs) / rhs[o_dim]
    return 2.0 * math.prod(out) * per_out


def _jaxpr_flops(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "scan":
            total += eqn.params["length"] * _jaxpr_flops(eqn.params["jaxpr"].jaxpr)
        elif name == "while":
            inner = (_jaxpr_flops(eqn.params["body_jaxpr"].jaxpr)
                     + _jaxpr_flops(eqn.params["cond_jaxpr"].jaxpr))
            if inner:
                raise ValueError("matmul_flops: a while loop with an unknown trip count holds "
                                 "matrix products; use lax.scan (or a fori_loop with static "
                                 "bounds) so the count can scale with it")
        elif name == "cond":
            total += max(_jaxpr_flops(b.jaxpr) for b in eqn.params["branches"])
        else:  # jit, remat, custom_jvp/vjp, closed_call ...: count each sub-jaxpr once
            for value in eqn.params.values():
                for sub in (value if isinstance(value, (tuple, list)) else (value,)):
                    if hasattr(sub, "eqns"):
                        total += _jaxpr_flops(sub)
                    elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                        total += _jaxpr_flops(sub.jaxpr)
    return total


def matmul_flops(fn: Callable, *args, **kwargs) -> float:
    """FLOPs of every matrix product (dot_general, convolution: 2*M*N*K) that `fn(*args)`
    executes, scan bodies multiplied by their lengths, the larger branch of a cond.
    Elementwise work is not counted, so a rate from it is a lower bound on arithmetic."""
    closed = jax.make_jaxpr(fn)(*args, **kwargs)
    return _jaxpr_flops(closed.jaxpr)


# ----------------------------------------------------------------------------- ceilings
def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    info.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    return info


def _max_mhz() -> float | None:
    """The CPU's maximum clock if the OS exposes it (cpufreq or lscpu), else None."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            return int(f.read()) / 1000.0
    except (OSError, ValueError):
        pass
    try:
        import subprocess
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"CPU max MHz:\s*([\d.]+)", out)
        if m:
            return float(m.group(1))
    except (OSError, subprocess.SubprocessError):
        pass
    return None


TURBO_ALLOWANCE = 1.5
"""When only the nominal clock is known (a VM's /proc/cpuinfo), the ceiling assumes the
cores may boost to this multiple of it: an upper bound, never an underestimate."""


def cpu_ceiling(cores: int | None = None, info: Mapping[str, str] | None = None,
                max_mhz: float | None = None) -> tuple[float, str]:
    """Theoretical f32 FLOP/s of the CPU: cores x FLOP/cycle x clock.

    FLOP/cycle = 2 (FMA) x 2 (FMA pipes) x f32 lanes, the lanes of the widest vector unit:
    16 with AVX-512 (but 8 on AMD Zen 4 and older, whose AVX-512 runs on 256-bit pipes),
    8 with AVX2/FMA, 4 otherwise. Clock: the maximum the OS reports, else the nominal clock
    x TURBO_ALLOWANCE."""
    info = _cpuinfo() if info is None else info
    cores = cores or len(os.sched_getaffinity(0))
    flags = set(info.get("flags", "").split())
    amd_old = "AMD" in info.get("vendor_id", "") and int(info.get("cpu family", "0")) <= 25
    if "avx512f" in flags and not amd_old:
        lanes = 16
    elif "fma" in flags or "avx2" in flags:
        lanes = 8
    else:
        lanes = 4
    per_cycle = 2 * 2 * lanes
    mhz = max_mhz if max_mhz is not None else _max_mhz()
    if mhz is not None:
        clock, clock_how = mhz / 1000.0, "max clock"
    else:
        nominal = float(info.get("cpu MHz", "3000")) / 1000.0
        clock, clock_how = nominal * TURBO_ALLOWANCE, \
            f"nominal {nominal:.2f} GHz x {TURBO_ALLOWANCE} turbo allowance"
    ceiling = cores * per_cycle * clock * 1e9
    how = (f"{cores} cores x {per_cycle} f32 FLOP/cycle ({lanes} lanes x 2 FMA pipes x 2) x "
           f"{clock:.2f} GHz ({clock_how}) = {ceiling / 1e9:,.0f} GFLOP/s")
    return ceiling, how


# Dense (no sparsity) f32-input matmul peaks in TFLOP/s. JAX's default matmul precision on
# NVIDIA Ampere and later runs f32 products on TF32 tensor cores, so that is the ceiling.
GPU_TF32_TFLOPS = {
    "H200": 494.7, "H100 SXM": 494.7, "H100 PCIe": 378.0, "H100": 494.7, "GH200": 494.7,
    "A100": 156.0, "L40S": 183.0, "L4": 60.0, "A10": 62.5, "RTX 4090": 82.6,
    "V100": 15.7,   # no TF32: plain f32
    "T4": 8.1,
}


def gpu_ceiling(device_kind: str) -> tuple[float, str] | None:
    """(FLOP/s, explanation) of an NVIDIA GPU from the spec table, or None if unknown."""
    for name in sorted(GPU_TF32_TFLOPS, key=len, reverse=True):
        if name.lower() in device_kind.lower():
            tf = GPU_TF32_TFLOPS[name]
            return tf * 1e12, f"{device_kind}: {tf:,.1f} TFLOP/s dense TF32 (spec sheet)"
    return None


def machine_ceiling(device: Any = None) -> tuple[float, str]:
    """Theoretical FLOP/s of `device` (default: jax.devices()[0]) and how it was derived.
    An unknown accelerator gets an infinite ceiling, said so."""
    device = device or jax.devices()[0]
    if device.platform == "cpu":
        return cpu_ceiling()
    found = gpu_ceiling(getattr(device, "device_kind", ""))
    if found is None:
        return math.inf, f"{device.device_kind}: no spec in the table, ceiling not checked"
    return found


class AboveCeilingError(RuntimeError):
    """A measured rate above the machine's theoretical ceiling: a measurement bug."""


def checked_rate(flops: float, seconds: float, ceiling: float, what: str = "") -> float:
    """flops / seconds, refusing a rate above the theoretical ceiling."""
    rate = flops / seconds
    if rate > ceiling:
        raise AboveCeilingError(f"{what}: {rate / 1e9:,.1f} GFLOP/s measured, above the "
                                f"machine's ceiling {ceiling / 1e9:,.1f} GFLOP/s: the timing "
                                "or the FLOP count is wrong")
    return rate


# ----------------------------------------------------------------------------- timing
def interleaved(fns: Mapping[str, Callable[[], Any]], repeats: int = 3
                ) -> dict[str, list[float]]:
    """Wall seconds of each fn, run in turn (a, b, c, a, b, c, ...) `repeats` times, so
    that load from other processes hits every measurement alike. Each fn's result is
    blocked on (jax.block_until_ready) inside the timed span."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            out[name].append(time.perf_counter() - t)
    return out


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)
