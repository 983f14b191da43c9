"""Paired difference of two methods' encoder read-outs (experiments.probe_encoder's
readout-<variant>.json), seed by seed on the same data: mean [95% t-interval].

  python scripts/paired_readout.py runs/probe_encoder/hopper-gravity/readout-simphys.json:reda \
      runs/probe_encoder/hopper-gravity/readout-default.json:reda_wo_model

Both runs must share their collections, seeds and number of seeds (the probe's defaults);
`probe_encoder` itself prints the paired rows of one method across two variants."""
from __future__ import annotations

import argparse
import json


def per_collection(spec: str) -> dict:
    path, _, method = spec.rpartition(":")
    record = json.load(open(path))["per_collection"]
    missing = [c for c, by_method in record.items() if method not in by_method]
    if missing:
        raise SystemExit(f"{path}: no method {method!r} in collection(s) {missing}")
    return {c: {"a - b": by_method[method]} for c, by_method in record.items()}


def main() -> None:
    from reda_jax.report.encoder_probe import format_readout, paired_rows
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="readout JSON:method")
    parser.add_argument("b", help="readout JSON:method")
    args = parser.parse_args()
    rows = paired_rows(per_collection(args.a), per_collection(args.b))
    print(f"a = {args.a}\nb = {args.b}\n")
    print(format_readout(rows))


if __name__ == "__main__":
    main()
