"""Tests for reda_jax.data.store: Minari round trip, validation errors, atomic writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from reda_jax.data import store
from reda_jax.data.store import DatasetError

pytestmark = pytest.mark.timeout(120)

DS_ID = "reda/hopper-gravity/gravity_x0p5-ckpt1-train-v0"
META = dict(task_set="hopper-gravity", task_name="gravity_x0.5", env_id="Hopper-v5",
            split="train", parameter="gravity", multiplier=0.5, checkpoints=[25],
            checkpoint_returns={"25": 1234.5})


def make_arrays(lengths=(3, 7, 1, 10, 4), ends=("term", "trunc", "term", "trunc", "trunc"),
                ds=5, da=2, seed=0):
    rng = np.random.default_rng(seed)
    parts = {k: [] for k in store.FIELDS}
    for L, end in zip(lengths, ends):
        o = rng.standard_normal((L + 1, ds)).astype(np.float32)
        parts["observations"].append(o[:-1])
        parts["next_observations"].append(o[1:])
        parts["actions"].append(rng.uniform(-1, 1, (L, da)).astype(np.float32))
        parts["rewards"].append(rng.standard_normal(L).astype(np.float32))
        t, tr = np.zeros(L, bool), np.zeros(L, bool)
        (t if end == "term" else tr)[-1] = True
        parts["terminals"].append(t)
        parts["truncations"].append(tr)
    return {k: np.concatenate(v) for k, v in parts.items()}


def assert_arrays_equal(a, b):
    assert set(a) == set(b) == set(store.FIELDS)
    for k in store.FIELDS:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture
def written(tmp_path):
    arrays = make_arrays()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the writer must not trigger Minari's warnings
        store.write_dataset(tmp_path, DS_ID, arrays, META)
    return tmp_path, arrays


def test_dataset_id_helper_is_accepted_by_minari():
    from minari.dataset.minari_dataset import parse_dataset_id
    i = store.dataset_id("hopper-gravity", "gravity_x0.5", "ckpt1", "train")
    assert i == DS_ID
    assert parse_dataset_id(i) == ("reda/hopper-gravity", "gravity_x0p5-ckpt1-train", 0)
    with pytest.raises(ValueError, match="split"):
        store.dataset_id("hopper-gravity", "g", "ckpt1", "val")
    with pytest.raises(ValueError, match="Minari"):
        store.write_dataset("/nonexistent", "reda/x/a.b-v0", make_arrays(), META)


def test_round_trip_flat_minari_and_metadata(written, monkeypatch):
    root, arrays = written
    flat, meta = store.load_dataset(root, DS_ID)
    assert_arrays_equal(flat, arrays)
    slow, meta_m = store.load_dataset_minari(root, DS_ID)
    assert_arrays_equal(slow, flat)
    for k, v in META.items():
        assert meta[k] == v
    assert meta == meta_m
    assert (meta["num_transitions"], meta["num_episodes"]) == (25, 5)
    assert (meta["observation_dim"], meta["action_dim"], meta["dataset_id"]) == (5, 2, DS_ID)

    import minari
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    mds = minari.load_dataset(DS_ID)
    assert (mds.total_episodes, mds.total_steps) == (5, 25)
    ep = mds[1]  # second episode: rows 3..9, observations hold T+1 = 8 rows
    np.testing.assert_array_equal(ep.observations[:-1], arrays["observations"][3:10])
    np.testing.assert_array_equal(ep.observations[-1], arrays["next_observations"][9])
    assert ep.truncations[-1] and not ep.terminations.any()
    assert mds.action_space.low.min() == -1.0 and mds.action_space.shape == (2,)
    assert list(minari.list_local_datasets()) == [DS_ID]
    assert mds.storage.metadata["reda"]["multiplier"] == 0.5


def test_numpy_metadata_and_casting(tmp_path):
    arrays = {k: (v.astype(np.float64) if v.dtype == np.float32 else v.astype(np.int8))
              for k, v in make_arrays().items()}
    meta = dict(META, multiplier=np.float32(1.5), checkpoints=np.array([5, 25, 45]))
    store.write_dataset(tmp_path, DS_ID, arrays, meta)
    flat, m = store.load_dataset(tmp_path, DS_ID)
    assert flat["rewards"].dtype == np.float32 and flat["terminals"].dtype == np.bool_
    assert m["multiplier"] == 1.5 and m["checkpoints"] == [5, 25, 45]


def test_relative_root(tmp_path, monkeypatch):
    """A root given relative to the working directory works for writing and both loaders."""
    monkeypatch.chdir(tmp_path)
    arrays = make_arrays()
    store.write_dataset("rel/datasets", DS_ID, arrays, META)
    assert_arrays_equal(store.load_dataset("rel/datasets", DS_ID)[0], arrays)
    assert_arrays_equal(store.load_dataset_minari("rel/datasets", DS_ID)[0], arrays)


# ----------------------------------------------------------------------- validation

def corrupt_cache(root, change):
    path = store.dataset_path(root, DS_ID) / store.CACHE_FILE
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return str(path)


def set_nan_reward(a):
    a["rewards"][7] = np.nan


def set_inf_obs(a):
    a["next_observations"][12, 3] = np.inf


def bad_obs_dim(a):
    a["next_observations"] = a["next_observations"][:, :4]


def short_actions(a):
    a["actions"] = a["actions"][:-1]


def f64_rewards(a):
    a["rewards"] = a["rewards"].astype(np.float64)


def int_terminals(a):
    a["terminals"] = a["terminals"].astype(np.int32)


def break_inside(a):
    a["next_observations"][5] += 1.0  # row 5 is inside episode 2 (rows 3..9)


def last_open(a):
    a["truncations"][-1] = False


def drop_field(a):
    del a["truncations"]


@pytest.mark.parametrize("change, words", [
    (set_nan_reward, ["rewards", "non-finite", "index 7"]),
    (set_inf_obs, ["next_observations", "non-finite", "index 12"]),
    (bad_obs_dim, ["next_observations shape (25, 4)", "(25, 5)"]),
    (short_actions, ["actions", "24 rows"]),
    (f64_rewards, ["rewards", "float64", "float32"]),
    (int_terminals, ["terminals", "int32", "bool"]),
    (break_inside, ["episode boundary", "next_observations[5] != observations[6]"]),
    (last_open, ["episode boundary", "index 24", "ends no episode"]),
    (drop_field, ["missing array 'truncations'"]),
])
def test_corrupted_cache_errors_name_file_and_problem(written, change, words):
    root, _ = written
    path = corrupt_cache(root, change)
    with pytest.raises(DatasetError) as e:
        store.load_dataset(root, DS_ID)
    msg = str(e.value)
    assert path in msg
    for w in words:
        assert w in msg, (w, msg)


def test_boundary_at_episode_end_is_not_an_error(written):
    root, arrays = written
    # next_observations[2] ends episode 1 (terminal); it need not equal observations[3]
    assert arrays["terminals"][2]
    assert not np.array_equal(arrays["next_observations"][2], arrays["observations"][3])
    store.load_dataset(root, DS_ID)


def test_missing_things(written):
    root, _ = written
    d = store.dataset_path(root, DS_ID)
    with pytest.raises(DatasetError, match="not found") as e:
        store.load_dataset(root, "reda/hopper-gravity/other-v0")
    assert str(root / "reda/hopper-gravity/other-v0") in str(e.value)

    meta = json.loads((d / store.METADATA_FILE).read_text())
    del meta["env_id"]
    (d / store.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"missing keys \['env_id'\]") as e:
        store.load_dataset(root, DS_ID)
    assert str(d / store.METADATA_FILE) in str(e.value)

    (d / store.CACHE_FILE).unlink()
    with pytest.raises(DatasetError, match="missing flat cache") as e:
        store.load_dataset(root, DS_ID)
    assert str(d / store.CACHE_FILE) in str(e.value)

    (d / store.MARKER_FILE).unlink()
    for load in (store.load_dataset, store.load_dataset_minari):
        with pytest.raises(DatasetError, match="incomplete") as e:
            load(root, DS_ID)
        assert str(d / store.MARKER_FILE) in str(e.value)


def test_writer_rejects_bad_data_and_writes_nothing(tmp_path):
    a = make_arrays()
    a["rewards"][7] = np.nan
    with pytest.raises(DatasetError, match="rewards.*index 7"):
        store.write_dataset(tmp_path, DS_ID, a, META)
    with pytest.raises(DatasetError, match=r"missing keys \['split'\]"):
        store.write_dataset(tmp_path, DS_ID, make_arrays(),
                            {k: v for k, v in META.items() if k != "split"})
    assert not store.dataset_path(tmp_path, DS_ID).exists()


# ----------------------------------------------------------------------- atomicity

def hidden_leftovers(root):
    return [p.name for p in (root / "reda/hopper-gravity").iterdir() if p.name.startswith(".")]


def test_crash_before_final_rename_leaves_nothing_loadable(tmp_path, monkeypatch):
    real = os.replace

    def fail_on_dataset_rename(src, dst):
        if ".tmp-" in str(src):
            raise OSError("simulated crash")
        return real(src, dst)

    monkeypatch.setattr(store.os, "replace", fail_on_dataset_rename)
    with pytest.raises(OSError, match="simulated"):
        store.write_dataset(tmp_path, DS_ID, make_arrays(), META)
    with pytest.raises(DatasetError, match="not found"):
        store.load_dataset(tmp_path, DS_ID)
    assert hidden_leftovers(tmp_path) == []
    monkeypatch.setattr(store.os, "replace", real)
    store.write_dataset(tmp_path, DS_ID, make_arrays(), META)
    assert_arrays_equal(store.load_dataset(tmp_path, DS_ID)[0], make_arrays())


def test_failed_overwrite_keeps_old_dataset(written, monkeypatch):
    root, old = written

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store.np, "savez", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        store.write_dataset(root, DS_ID, make_arrays(seed=1), META)
    assert_arrays_equal(store.load_dataset(root, DS_ID)[0], old)
    assert hidden_leftovers(root) == []


def test_crash_between_renames_restores_old(written, monkeypatch):
    root, old = written
    real = os.replace

    def fail_second(src, dst):
        if ".tmp-" in str(src):
            raise KeyboardInterrupt  # the old copy has already been moved aside
        return real(src, dst)

    monkeypatch.setattr(store.os, "replace", fail_second)
    with pytest.raises(KeyboardInterrupt):
        store.write_dataset(root, DS_ID, make_arrays(seed=1), META)
    assert_arrays_equal(store.load_dataset(root, DS_ID)[0], old)
    assert hidden_leftovers(root) == []


def test_killed_between_renames_reads_as_missing_then_recovers(written):
    root, _ = written
    d = store.dataset_path(root, DS_ID)
    os.rename(d, d.with_name(f".{d.name}.old-999999999-abc"))  # what a kill leaves behind
    with pytest.raises(DatasetError, match="not found"):
        store.load_dataset(root, DS_ID)
    new = make_arrays(lengths=(4, 4), ends=("term", "trunc"), seed=2)
    store.write_dataset(root, DS_ID, new, META)
    assert_arrays_equal(store.load_dataset(root, DS_ID)[0], new)
    assert hidden_leftovers(root) == []  # the stale ".old-" copy was cleaned


def test_killed_writer_process(tmp_path):
    """A writer killed (os._exit) mid-write leaves only a hidden temp dir that never loads
    and that the next write removes."""
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(os.getcwd())!r})
        import numpy as np
        from reda_jax.data import store
        from tests.test_store import make_arrays, META, DS_ID
        store.np.savez = lambda *a, **k: os._exit(3)   # die half-way through the write
        store.write_dataset({str(tmp_path)!r}, DS_ID, make_arrays(), META)
    """)
    rc = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd(), timeout=100).returncode
    assert rc == 3
    left = hidden_leftovers(tmp_path)
    assert len(left) == 1 and ".tmp-" in left[0]
    assert (tmp_path / "reda/hopper-gravity" / left[0] / "data/main_data.hdf5").exists()
    with pytest.raises(DatasetError, match="not found"):
        store.load_dataset(tmp_path, DS_ID)
    import minari.storage.local as ml
    assert [d for d in ml.list_non_hidden_dirs(tmp_path / "reda/hopper-gravity")] == []
    store.write_dataset(tmp_path, DS_ID, make_arrays(), META)
    assert hidden_leftovers(tmp_path) == []
    assert_arrays_equal(store.load_dataset(tmp_path, DS_ID)[0], make_arrays())


def test_overwrite_existing(written, monkeypatch):
    root, _ = written
    new = make_arrays(lengths=(2, 6), ends=("trunc", "term"), ds=5, da=2, seed=5)
    store.write_dataset(root, DS_ID, new, dict(META, multiplier=0.8))
    flat, meta = store.load_dataset(root, DS_ID)
    assert_arrays_equal(flat, new)
    assert meta["multiplier"] == 0.8 and meta["num_transitions"] == 8
    assert_arrays_equal(store.load_dataset_minari(root, DS_ID)[0], new)
    assert hidden_leftovers(root) == []
    import minari
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    assert minari.load_dataset(DS_ID).total_steps == 8


def test_to_transitions():
    import jax.numpy as jnp
    a = make_arrays()
    t = store.to_transitions(a)
    assert t.terminals.dtype == np.float32 and t.terminals.sum() == 2
    assert t.truncations.sum() == 3 and t.size == 25
    tj = store.to_transitions(a, xp=jnp)
    np.testing.assert_array_equal(np.asarray(tj.observations), a["observations"])
