"""Runs a corpus of bad inputs against the apps and counts the outcomes (docs/reliability.md).

  python scripts/bad_inputs_corpus.py --code=. --scratch=/tmp/corpus > corpus.md

--code is the checkout whose apps run (PYTHONPATH); the smoke collection and a finished
smoke run are made with that code first (~2 min on 2 CPU cores), then each case copies
them, breaks something, and runs one app as a subprocess. Outcomes of a case that must
fail: clean (non-zero exit, no traceback, the problem on one line), traceback (a traceback
whose last line names the problem), help dump (absl's usage text with the problem on its
last line), cryptic (any other failure), silent (exit code 0).
Cases marked `recover` must succeed with the right result: recovered, or silent (wrong
result) / stuck (failed).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TS = "hopper-gravity"
TRAIN_ID = "reda/hopper-gravity/gravity_x0p5-ckpt1-train-v0"
OTHER_ID = "reda/hopper-gravity/gravity_x0p8-ckpt1-train-v0"


def run(code, args, timeout=300, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(code), JAX_PLATFORMS="cpu")
    t = time.time()
    try:
        p = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                           timeout=timeout, env=env, cwd=cwd or code)
        return p.returncode, p.stdout, p.stderr, time.time() - t
    except subprocess.TimeoutExpired as e:
        text = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        return None, text(e.stdout), text(e.stderr), time.time() - t


def refresh_marker(ds_dir: Path) -> None:
    """Re-records COMPLETE's digests (a dataset written bad by a buggy writer)."""
    marker = json.loads((ds_dir / "COMPLETE").read_text())
    if "files" in marker:
        from reda_jax.data.store import DIGESTED, file_digest
        marker["files"] = {n: file_digest(ds_dir / n) for n in DIGESTED}
        (ds_dir / "COMPLETE").write_text(json.dumps(marker))


def edit_flat(ds_dir: Path, fn) -> None:
    with np.load(ds_dir / "flat.npz") as z:
        arrays = {k: z[k] for k in z.files}
    fn(arrays)
    with open(ds_dir / "flat.npz", "wb") as f:
        np.savez(f, **arrays)
    refresh_marker(ds_dir)


def edit_meta(ds_dir: Path, **kw) -> None:
    meta = json.loads((ds_dir / "reda_metadata.json").read_text())
    meta.update(kw)
    (ds_dir / "reda_metadata.json").write_text(json.dumps(meta))
    refresh_marker(ds_dir)


def newest(ckdir: Path) -> Path:
    return max((p for p in ckdir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def classify(rc, out, err, expect, keyword, check):
    text = out + err
    if expect == "recover":
        if rc is None:
            return "timeout"
        if rc == 0:
            return "recovered" if check is None or check() else "silent"
        return "stuck"
    if rc == 0 or rc is None:
        return "silent"
    lines = [l for l in err.strip().splitlines() if l.strip()]
    if "Traceback" not in text and lines and keyword.lower() in lines[0].lower() \
            and len(lines) <= 3:
        return "clean"
    if "Traceback" in text and lines and keyword.lower() in lines[-1].lower():
        return "traceback"
    if "Traceback" not in text and lines and keyword.lower() in lines[-1].lower():
        return "help dump"   # absl's usage text, the problem on its last line
    return "cryptic"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--code", required=True)
    ap.add_argument("--scratch", required=True)
    ap.add_argument("--only", default="", help="comma-separated parts of case names")
    ap.add_argument("--timeout", type=float, default=600,
                    help="seconds per case; a case still running then counts as accepted")
    a = ap.parse_args()
    code, scratch = Path(a.code).resolve(), Path(a.scratch).resolve()
    sys.path.insert(0, str(code))
    scratch.mkdir(parents=True, exist_ok=True)
    data, base = scratch / "data", scratch / "run"
    if not (base / "results.json").exists():
        shutil.rmtree(base, ignore_errors=True)
        rc, out, err, _ = run(code, ["-m", "experiments.train", f"--task_set={TS}",
                                     "--preset=smoke", f"--data_dir={data}",
                                     f"--workdir={base}", "--noprogress"], timeout=900)
        assert rc == 0, err[-2000:]
    results0 = json.loads((base / "results.json").read_text())
    metrics0 = (base / "metrics.csv").read_text()
    blocker = scratch / "a_file"
    blocker.write_text("x")

    def train(d, w, *extra):
        return ["-m", "experiments.train", f"--task_set={TS}", "--preset=smoke",
                f"--data_dir={d}", f"--workdir={w}", "--noprogress", *extra]

    def same_results(w):
        """The per-seed returns agree to rtol 1e-6 (as the project's resume tests ask: XLA
        programs compiled in another process may differ in the last bits)."""
        r = json.loads((w / "results.json").read_text())
        try:
            return all(np.allclose(v["per_seed"], r["protocols"][p]["tasks"][t]["per_seed"],
                                   rtol=1e-6, atol=0)
                       for p, s in results0["protocols"].items()
                       for t, v in s["tasks"].items())
        except KeyError:
            return False

    cases = []   # (name, app args (fn of case dir), setup, expect, keyword, check)

    def flag(name, args, keyword):
        cases.append((name, lambda c: args(c), None, "error", keyword, None))

    t_args = lambda *x: (lambda c: train(data, c / "w", *x))
    flag("train --lambda1=-1", t_args("--lambda1=-1"), "lambda1")
    flag("train --lambda1=nan", t_args("--lambda1=nan"), "lambda1")
    flag("train --lambda2=inf", t_args("--lambda2=inf"), "lambda2")
    flag("train --lambda2=-0.5", t_args("--lambda2=-0.5"), "lambda2")
    flag("train --num_seeds=0", t_args("--num_seeds=0"), "num_seeds")
    flag("train --num_models=0", t_args("--num_models=0"), "num_models")
    flag("train --seed=-1", t_args("--seed=-1"), "seed")
    flag("train --num_seeds=abc", t_args("--num_seeds=abc"), "num_seeds")
    flag("train --checkpoints=2", t_args("--checkpoints=2"), "checkpoints")
    flag("train --ablation=wo_everything", t_args("--ablation=wo_everything"), "ablation")
    flag("train --algo=focal --lambda1=0.5", t_args("--algo=focal", "--lambda1=0.5"), "lambda1")
    flag("train --from_workdir without --from_stage",
         t_args(f"--from_workdir={base}"), "from_stage")
    flag("train --from_stage without --from_workdir",
         t_args("--from_stage=representation"), "from_workdir")
    flag("train --from_workdir missing", t_args("--from_stage=representation",
                                               "--from_workdir=/nonexistent/run"),
         "from_workdir")
    flag("train --workdir is a file", lambda c: train(data, blocker), "workdir")
    flag("train --workdir read-only", lambda c: train(data, "/sys/reda_run"), "workdir")
    flag("train --data_dir is a file", lambda c: train(blocker, c / "w"), "data_dir")
    flag("train positional argument", lambda c: train(data, c / "w", "extra"), "argument")
    flag("collect --workdir is a file",
         lambda c: ["-m", "experiments.collect", f"--task_set={TS}", "--preset=smoke",
                    f"--workdir={blocker}"], "workdir")
    flag("collect --seed=-1", lambda c: ["-m", "experiments.collect", "--preset=smoke",
                                         f"--workdir={c / 'w'}", "--seed=-1"], "seed")
    flag("didactic --num_seeds=0", lambda c: ["-m", "experiments.didactic", "--num_seeds=0",
                                              f"--workdir={c / 'w'}"], "num_seeds")
    flag("didactic --collect_seeds=a", lambda c: ["-m", "experiments.didactic",
                                                  "--collect_seeds=a",
                                                  f"--workdir={c / 'w'}"], "collect_seeds")
    flag("didactic --methods=foo", lambda c: ["-m", "experiments.didactic", "--methods=foo",
                                              f"--workdir={c / 'w'}"], "methods")
    flag("didactic --workdir is a file", lambda c: ["-m", "experiments.didactic",
                                                    f"--workdir={blocker}"], "workdir")
    sweep = lambda *x: (lambda c: ["-m", "launch.sweep", f"--runs_root={c / 'r'}", *x])
    flag("sweep --num_seeds=0", sweep("--num_seeds=0"), "num_seeds")
    flag("sweep --seeds=x", sweep("--seeds=x"), "seeds")
    flag("sweep --parallel=0", sweep("--mode=local", "--parallel=0"), "parallel")
    flag("sweep --checkpoints=2", sweep("--checkpoints=2"), "checkpoint")
    flag("sweep --num_models=0", sweep("--num_models=0"), "num_models")
    flag("sweep --methods=foo", sweep("--methods=foo"), "methods")
    flag("tables --runs missing", lambda c: ["-m", "experiments.tables",
                                             "--runs=/nonexistent/runs"], "runs")
    flag("plots --runs missing", lambda c: ["-m", "experiments.plots",
                                            "--runs=/nonexistent/runs"], "runs")

    def with_data(name, fn, keyword):
        def setup(c):
            shutil.copytree(data, c / "data")
            fn(c / "data" / "datasets")
        cases.append((name, lambda c: train(c / "data", c / "w"), setup, "error", keyword,
                      None))

    with_data("dataset dir replaced by another task's", lambda r: (
        shutil.rmtree(r / TRAIN_ID), shutil.copytree(r / OTHER_ID, r / TRAIN_ID)), "task_name")
    with_data("dataset observation dim != task set's", lambda r: edit_flat(
        r / TRAIN_ID, lambda a: a.update(
            observations=np.concatenate([a["observations"], a["observations"][:, :1]], 1),
            next_observations=np.concatenate([a["next_observations"],
                                              a["next_observations"][:, :1]], 1))
    ) or edit_meta(r / TRAIN_ID, observation_dim=12), "dimension")
    with_data("dataset actions x1000", lambda r: edit_flat(
        r / TRAIN_ID, lambda a: a.update(actions=a["actions"] * 1000)), "actions")
    with_data("Minari main_data.hdf5 overwritten with garbage", lambda r: (
        r / TRAIN_ID / "data" / "main_data.hdf5").write_bytes(b"garbage" * 100), "main_data")
    with_data("flat.npz truncated", lambda r: (r / TRAIN_ID / "flat.npz").write_bytes(
        (r / TRAIN_ID / "flat.npz").read_bytes()[:500]), "flat.npz")
    with_data("NaN in rewards", lambda r: edit_flat(
        r / TRAIN_ID, lambda a: a["rewards"].__setitem__(3, np.nan)), "rewards")
    with_data("float64 observations", lambda r: edit_flat(
        r / TRAIN_ID, lambda a: a.update(observations=a["observations"].astype(np.float64))),
        "dtype")
    with_data("reda_metadata.json not JSON", lambda r: (
        r / TRAIN_ID / "reda_metadata.json").write_text("{not json"), "metadata")
    with_data("metadata names another split", lambda r: edit_meta(r / TRAIN_ID, split="test"),
              "split")

    def with_run(name, fn, expect, keyword, extra=(), check=None):
        def setup(c):
            shutil.copytree(base, c / "w")
            fn(c / "w")
        cases.append((name, lambda c: train(data, c / "w", *extra), setup, expect, keyword,
                      (lambda c: check(c / "w")) if check else None))

    with_run("config.json deleted, rerun as --ablation=wo_tc",
             lambda w: (w / "config.json").unlink(), "error", "config", ("--ablation=wo_tc",))
    with_run("config.json kept, rerun with --lambda1=0.5", lambda w: None, "error", "config",
             ("--lambda1=0.5",))
    with_run("metrics.csv deleted (must say so)", lambda w: (w / "metrics.csv").unlink(),
             "recover", "", check=lambda w: None)
    with_run("partial last line in metrics.csv", lambda w: open(w / "metrics.csv", "a").write(
        "meta_policy,2,meta/critic"), "recover", "",
        check=lambda w: (w / "metrics.csv").read_text() == metrics0)
    with_run("partial last line in eval_history.jsonl", lambda w: open(
        w / "eval_history.jsonl", "a").write('{"epoch": 3, "on_po'), "recover", "",
        check=same_results)
    with_run("eval_history.jsonl deleted", lambda w: (w / "eval_history.jsonl").unlink(),
             "recover", "", check=same_results)
    with_run("newest meta_policy checkpoint corrupt", lambda w: [
        f.write_bytes(b"junk") for f in newest(w / "checkpoints" / "meta_policy").rglob("*")
        if f.is_file() and f.stat().st_size > 0], "recover", "", check=same_results)
    with_run("stray empty step directory", lambda w: (
        w / "checkpoints" / "meta_policy" / "99").mkdir(), "recover", "", check=same_results)
    with_run("corrupt checkpoint metadata file", lambda w: [
        f.write_text("{") for f in newest(w / "checkpoints" / "meta_policy").rglob("*")
        if f.name == "_CHECKPOINT_METADATA"], "recover", "", check=same_results)
    with_run("finished run, corrupt dynamics checkpoint", lambda w: [
        f.write_bytes(b"junk") for f in (w / "checkpoints" / "dynamics").rglob("*")
        if f.is_file() and f.stat().st_size > 0], "recover", "", check=same_results)
    with_run("half-written orbax checkpoint (tmp dir)", lambda w: shutil.copytree(
        newest(w / "checkpoints" / "meta_policy"),
        w / "checkpoints" / "meta_policy" / "5.orbax-checkpoint-tmp-123"), "recover", "",
        check=same_results)

    def killed_in_first_write(w):
        rows = [l for l in metrics0.splitlines(True) if l.startswith(("stage", "dynamics,1,"))]
        for p in w.iterdir():
            if p.name not in ("config.json", "run_info.json"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        (w / "metrics.csv").write_text("".join(rows))
    with_run("killed during the first checkpoint write", killed_in_first_write, "recover", "",
             check=lambda w: (w / "metrics.csv").read_text() == metrics0)

    def tables_case(app):
        def setup(c):
            shutil.copytree(base, c / "runs" / "good")
            (c / "runs" / "bad").mkdir(parents=True)
            (c / "runs" / "bad" / "results.json").write_text('{"algo": "re')
        cases.append((f"{app} with one truncated results.json",
                      lambda c: ["-m", f"experiments.{app}", f"--runs={c / 'runs'}",
                                 f"--out={c / 'out'}"] + (["--notsne"] if app == "plots" else []),
                      setup, "recover", "",
                      lambda c: True))
    tables_case("tables")
    tables_case("plots")

    counts: dict[str, int] = {}
    print("| case | outcome | exit | first line of stderr |\n|---|---|---|---|")
    for name, args, setup, expect, keyword, check in cases:
        if a.only and not any(o in name for o in a.only.split(",")):
            continue
        c = scratch / "cases" / name.replace(" ", "_").replace("/", "_")
        shutil.rmtree(c, ignore_errors=True)
        c.mkdir(parents=True)
        if setup:
            setup(c)
        rc, out, err, dt = run(code, args(c), timeout=a.timeout)
        chk = (lambda: check(c)) if check else None
        outcome = classify(rc, out, err, expect, keyword, chk)
        if name.startswith("metrics.csv deleted"):
            outcome = ("recovered" if "metrics.csv" in (out + err) and "lacks" in out + err
                       else "silent") if rc == 0 else "stuck"
        if name.endswith("truncated results.json") and rc == 0 and "bad" not in err:
            outcome = "silent"
        counts[outcome] = counts.get(outcome, 0) + 1
        lines = [l for l in err.strip().splitlines() if l.strip()]
        first = (lines[-1] if "Traceback" in err or outcome == "help dump" else lines[0]) \
            if lines else ""
        print(f"| {name} | {outcome} | {rc} | {first[:150].replace('|', '/')} |", flush=True)
        shutil.rmtree(c, ignore_errors=True)
    print("\ncounts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
