"""The table of one encoder read-out JSON (experiments.probe_encoder's readout-<variant>.json):
mean [95% t-interval] over seeds x collections, as the probe printed it.

  python scripts/readout_table.py docs/runs/hopper-gravity1-mini-encoder-readouts/readout-default.json
  python scripts/readout_table.py docs/runs/didactic-encoder-readouts/readout-default.json reda

Optional method names keep only those rows. Paired differences: scripts/paired_readout.py."""
from __future__ import annotations

import argparse
import json


def main() -> None:
    from reda_jax.report.encoder_probe import format_readout, readout_rows
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="readout JSON")
    parser.add_argument("methods", nargs="*", help="methods to show (default all)")
    args = parser.parse_args()
    record = json.load(open(args.path))
    rows = readout_rows(record["per_collection"])
    if args.methods:
        missing = [m for m in args.methods if m not in rows]
        if missing:
            raise SystemExit(f"{args.path}: no method {missing} (has {sorted(rows)})")
        rows = {m: rows[m] for m in args.methods}
    print(f"{args.path}: task set {record['task_set']}, preset {record['preset']}, variant "
          f"{record['variant']} {' '.join(record['set'])}, {record['num_seeds']} seeds x "
          f"{len(record['per_collection'])} collection(s)\n")
    print(format_readout(rows))


if __name__ == "__main__":
    main()
