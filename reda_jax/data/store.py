"""Dataset store: Minari-format datasets plus a flat-array cache, written atomically.

Layout of one dataset under a root directory (the Minari root, ``MINARI_DATASETS_PATH``)::

    <root>/<namespace>/<name>-v<version>/      e.g. reda/hopper-gravity/gravity_x0p5-ckpt1-train-v0
        data/metadata.json                     Minari metadata; ours is under the key "reda"
        data/main_data.hdf5                    Minari episodes (observations have T+1 rows)
        flat.npz                               flat arrays in episode order (the fast path)
        reda_metadata.json                     our metadata sidecar
        COMPLETE                               completion marker, written last

``minari.load_dataset(dataset_id)`` with ``MINARI_DATASETS_PATH=<root>`` opens the same
dataset.  See docs/data.md for the metadata keys and the validation rules.

Flat arrays (N transitions, ds = observation dim, da = action dim), in episode order:
    observations (N, ds) float32, actions (N, da) float32, rewards (N,) float32,
    next_observations (N, ds) float32, terminals (N,) bool, truncations (N,) bool.
An episode ends at a transition whose terminal or truncation is True.

Length: the store's format, its validation (every array and metadata check that names the
problem) and its atomic writes are one contract; they are kept in one module.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from reda_jax.types import Transitions
from reda_jax.validate import InputError

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "truncations")
FLOAT_FIELDS = ("observations", "actions", "rewards", "next_observations")
BOOL_FIELDS = ("terminals", "truncations")

CACHE_FILE = "flat.npz"
METADATA_FILE = "reda_metadata.json"
MARKER_FILE = "COMPLETE"
MINARI_DIR = "data"
STORE_FORMAT = 1

# Keys the caller must put in `metadata`; the store adds STORE_KEYS itself.
REQUIRED_METADATA_KEYS = ("task_set", "task_name", "env_id", "split")
STORE_KEYS = ("dataset_id", "num_transitions", "num_episodes", "observation_dim",
              "action_dim", "store_format")

# Minari 0.5.4 grammar: (namespace/)name-vN. Name chars are [-_A-Za-z0-9]; the version is
# required in practice (parse_dataset_id fails without it). Dots are not allowed.
_PART_RE = re.compile(r"^[A-Za-z0-9_][-A-Za-z0-9_]*$")


ACTION_BOUND = 1.0  # actions are stored in the Box(-1, 1) action space
EXPECT_KEYS = ("dataset_id", "task_set", "task_name", "split", "group")


class DatasetError(InputError):
    """A dataset on disk (or given to the writer) is missing, incomplete or malformed (a bad
    input: apps report it as one line)."""


class DatasetNotFound(DatasetError):
    """The dataset's directory or completion marker is missing (nothing valid there yet)."""


# --------------------------------------------------------------------------- ids & paths

def _clean_part(part: str, what: str) -> str:
    part = str(part).replace(".", "p")  # 0.5 -> 0p5: Minari ids may not contain dots
    if not _PART_RE.match(part):
        raise ValueError(f"{what} {part!r} has characters a Minari id does not allow "
                         "(use letters, digits, '_' and '-')")
    return part


def dataset_id(task_set: str, task_name: str, group: str, split: str, version: int = 0) -> str:
    """The Minari id ``reda/<task_set>/<task_name>-<group>-<split>-v<version>``.

    Dots become 'p' (``gravity_x0.5`` -> ``gravity_x0p5``), since Minari rejects dots.
    Example: dataset_id("hopper-gravity", "gravity_x0.5", "ckpt1", "train")
    == "reda/hopper-gravity/gravity_x0p5-ckpt1-train-v0".
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    ts = _clean_part(task_set, "task_set")
    name = "-".join(_clean_part(p, w) for p, w in
                    ((task_name, "task_name"), (group, "group"), (split, "split")))
    return f"reda/{ts}/{name}-v{int(version)}"


def _check_id(ds_id: str) -> None:
    from minari.dataset.minari_dataset import parse_dataset_id
    try:
        parse_dataset_id(ds_id)
    except Exception as e:  # Minari raises ValueError or TypeError (missing -vN)
        raise ValueError(f"dataset id {ds_id!r} is not a valid Minari id "
                         "'(namespace/)name-vN' (no dots, version required)") from e


def dataset_path(root: str | Path, ds_id: str) -> Path:
    """Directory of a dataset: ``<root>/<dataset_id>``, absolute (Minari mishandles
    relative data paths)."""
    return Path(root).absolute() / ds_id


# --------------------------------------------------------------------------- validation

def _fail(path: Path | str, problem: str):
    raise DatasetError(f"{path}: {problem}")


def validate_arrays(arrays: Mapping[str, np.ndarray], where: Path | str) -> None:
    """Checks fields, dtypes, shapes, finiteness and episode boundaries; raises DatasetError
    naming `where` and the problem."""
    for k in FIELDS:
        if k not in arrays:
            _fail(where, f"missing array '{k}'")
    for k in FLOAT_FIELDS:
        if arrays[k].dtype != np.float32:
            _fail(where, f"'{k}' has dtype {arrays[k].dtype}, expected float32")
    for k in BOOL_FIELDS:
        if arrays[k].dtype != np.bool_:
            _fail(where, f"'{k}' has dtype {arrays[k].dtype}, expected bool")
    obs, nobs, act = arrays["observations"], arrays["next_observations"], arrays["actions"]
    if obs.ndim != 2 or act.ndim != 2:
        _fail(where, f"observations {obs.shape} and actions {act.shape} must be 2-D (N, dim)")
    n = obs.shape[0]
    if n == 0:
        _fail(where, "dataset holds no transitions")
    if nobs.shape != obs.shape:
        _fail(where, f"next_observations shape {nobs.shape} != observations shape {obs.shape}")
    for k in ("actions", "rewards", "terminals", "truncations"):
        if arrays[k].shape[:1] != (n,):
            _fail(where, f"'{k}' has {arrays[k].shape[0] if arrays[k].ndim else 0} rows "
                         f"(shape {arrays[k].shape}), expected {n} like observations")
    for k in ("rewards", "terminals", "truncations"):
        if arrays[k].ndim != 1:
            _fail(where, f"'{k}' has shape {arrays[k].shape}, expected ({n},)")
    for k in FLOAT_FIELDS:
        bad = ~np.isfinite(arrays[k])
        if bad.any():
            row = int(np.argmax(bad.reshape(n, -1).any(axis=1)))
            _fail(where, f"'{k}' has a non-finite value at index {row}")
    outside = np.abs(act) > ACTION_BOUND
    if outside.any():
        row = int(np.argmax(outside.any(axis=1)))
        _fail(where, f"'actions' outside the action space [-{ACTION_BOUND:g}, {ACTION_BOUND:g}] "
                     f"at index {row} (value {float(act[row][outside[row]][0]):g})")
    done = arrays["terminals"] | arrays["truncations"]
    if not done[-1]:
        _fail(where, f"episode boundary broken: the last transition (index {n - 1}) "
                     "ends no episode (neither terminal nor truncation)")
    mismatch = ~done[:-1] & np.any(nobs[:-1] != obs[1:], axis=1)
    if mismatch.any():
        i = int(np.argmax(mismatch))
        _fail(where, f"episode boundary broken: next_observations[{i}] != observations[{i + 1}] "
                     f"inside an episode (neither terminal nor truncation at index {i})")


def _validate_metadata(meta: Any, arrays: Mapping[str, np.ndarray] | None, where) -> None:
    if not isinstance(meta, dict):
        _fail(where, "metadata is not a JSON object")
    missing = [k for k in REQUIRED_METADATA_KEYS + STORE_KEYS if k not in meta]
    if missing:
        _fail(where, f"metadata is missing keys {missing}")
    if arrays is not None:
        n, ds = arrays["observations"].shape
        if meta["num_transitions"] != n:
            _fail(where, f"metadata num_transitions={meta['num_transitions']} but arrays hold {n}")
        if meta["observation_dim"] != ds or meta["action_dim"] != arrays["actions"].shape[1]:
            _fail(where, "metadata observation_dim/action_dim disagree with the arrays")


def check_expected(meta: Mapping[str, Any], expect: Mapping[str, Any] | None, where) -> None:
    """The metadata's dataset_id / task_set / task_name / split / group equal `expect`'s."""
    differ = [k for k, v in (expect or {}).items() if meta.get(k) != v]
    if differ:
        _fail(where, "metadata " + ", ".join(f"{k}={meta.get(k)!r}" for k in differ)
              + " but " + ", ".join(f"{k}={expect[k]!r}" for k in differ) + " was requested "
              "(this directory holds another dataset; re-collect it or fix the path)")


def file_digest(path: Path) -> dict:
    """{"size": bytes, "sha256": hex} of a file (recorded in COMPLETE, checked at load)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


DIGESTED = (f"{MINARI_DIR}/main_data.hdf5", CACHE_FILE, METADATA_FILE)


def check_digests(path: Path, marker: dict, names=DIGESTED) -> None:
    """Each file's size and sha256 equal those COMPLETE recorded at write (older markers
    without "files" are not checked)."""
    files = marker.get("files") if isinstance(marker, dict) else None
    if not files:
        return
    for name in names:
        if name not in files:
            continue
        f = path / name
        if not f.is_file():
            _fail(f, "file missing (it was written with the dataset)")
        if f.stat().st_size != files[name]["size"]:
            _fail(f, f"size {f.stat().st_size} bytes differs from the {files[name]['size']} "
                     "recorded at write: the file was modified or truncated; re-collect")
        if file_digest(f)["sha256"] != files[name]["sha256"]:
            _fail(f, "checksum differs from the one recorded at write: the file was "
                     "modified; re-collect")


def _to_jsonable(x):
    if isinstance(x, dict):
        return {str(k): _to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _to_jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    return x


def _episode_ends(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Exclusive end index of each episode, shape (E,)."""
    return np.flatnonzero(arrays["terminals"] | arrays["truncations"]) + 1


# --------------------------------------------------------------------------- writing

def _fsync_write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(final: Path) -> None:
    """Removes temp/old siblings of `final` left by killed writes (not by live writers)."""
    for p in final.parent.glob(f".{final.name}.*"):
        m = re.match(rf"^\.{re.escape(final.name)}\.(tmp|old)-(\d+)-[0-9a-f]+$", p.name)
        if m and (int(m.group(2)) == os.getpid() or not _pid_alive(int(m.group(2)))):
            shutil.rmtree(p, ignore_errors=True)


def _ensure_namespaces(root: Path, ds_id: str) -> None:
    """Writes namespace_metadata.json for each namespace level so Minari lists them."""
    parts = ds_id.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        f = root.joinpath(*parts[:i]) / "namespace_metadata.json"
        if not f.exists():
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_name(f".{f.name}.{uuid.uuid4().hex}")
            _fsync_write(tmp, "{}")
            os.replace(tmp, f)


def _write_minari(data_dir: Path, ds_id: str, arrays: Mapping[str, np.ndarray],
                  metadata: dict, env_spec) -> None:
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    ds, da = arrays["observations"].shape[1], arrays["actions"].shape[1]
    obs_space = gym.spaces.Box(-np.inf, np.inf, (ds,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (da,), np.float32)
    storage = MinariStorage.new(data_dir, observation_space=obs_space, action_space=act_space,
                                env_spec=env_spec, data_format="hdf5")
    storage.update_metadata({
        "dataset_id": ds_id,
        "minari_version": minari.__version__,
        "algorithm_name": str(metadata.get("algorithm_name", "SAC checkpoints (ReDA)")),
        "description": f"reda-jax offline dataset {ds_id}",
        "reda": metadata,
    })
    starts = np.concatenate([[0], _episode_ends(arrays)[:-1]])

    def buffers():
        for i, (s, e) in enumerate(zip(starts, _episode_ends(arrays))):
            yield EpisodeBuffer(
                id=i,
                observations=np.concatenate([arrays["observations"][s:e],
                                             arrays["next_observations"][e - 1:e]]),
                actions=arrays["actions"][s:e],
                rewards=arrays["rewards"][s:e],
                terminations=arrays["terminals"][s:e],
                truncations=arrays["truncations"][s:e],
            )

    storage.update_episodes(buffers())


def write_dataset(root: str | Path, dataset_id: str, transitions: Mapping[str, np.ndarray],
                  metadata: Mapping[str, Any], env_spec: gym.envs.registration.EnvSpec | None = None
                  ) -> Path:
    """Atomically writes a Minari dataset plus the flat cache; returns its directory.

    transitions: the flat arrays (see module docstring); float fields are cast to float32,
        terminals/truncations to bool, then validated (DatasetError if malformed).
    metadata: JSON-able dict with at least REQUIRED_METADATA_KEYS (task_set, task_name,
        env_id, split); numpy scalars/arrays are converted. Stored in the sidecar and in
        Minari's metadata under "reda", together with the STORE_KEYS the store adds.
    env_spec: optional gymnasium EnvSpec for Minari's recover_environment (default None:
        the spaces are Boxes built from the data shapes, actions in [-1, 1]).

    Everything goes to a hidden temporary sibling directory, the marker last, then it is
    renamed into place; an existing dataset is moved aside first (and put back if the
    write fails) and deleted afterwards. A process killed between those two renames leaves
    no dataset (loads say "not found"); the next write removes the stale copies.
    """
    _check_id(dataset_id)
    root = Path(root).absolute()
    final = dataset_path(root, dataset_id)
    arrays = {k: np.ascontiguousarray(transitions[k],
                                      np.float32 if k in FLOAT_FIELDS else np.bool_)
              for k in FIELDS if k in transitions}
    validate_arrays(arrays, f"<arrays for {dataset_id}>")
    meta = _to_jsonable(dict(metadata))
    missing = [k for k in REQUIRED_METADATA_KEYS if k not in meta]
    if missing:
        raise DatasetError(f"<metadata for {dataset_id}>: missing keys {missing}")
    n, ds = arrays["observations"].shape
    meta.update(dataset_id=dataset_id, num_transitions=int(n),
                num_episodes=int(len(_episode_ends(arrays))), observation_dim=int(ds),
                action_dim=int(arrays["actions"].shape[1]), store_format=STORE_FORMAT)
    json.dumps(meta)  # fails early if not JSON-able

    final.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(final)
    _ensure_namespaces(root, dataset_id)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp = final.with_name(f".{final.name}.tmp-{tag}")
    old = final.with_name(f".{final.name}.old-{tag}")
    try:
        tmp.mkdir()
        _write_minari(tmp / MINARI_DIR, dataset_id, arrays, meta, env_spec)
        with open(tmp / CACHE_FILE, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        _fsync_write(tmp / METADATA_FILE, json.dumps(meta, indent=1, sort_keys=True))
        digests = {name: file_digest(tmp / name) for name in DIGESTED}
        _fsync_write(tmp / MARKER_FILE, json.dumps({"num_transitions": int(n),
                                                    "files": digests}))
        _fsync_dir(tmp)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            os.replace(old, final)  # failed between the two renames: put the old copy back
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- reading

def _check_complete(root: str | Path, dataset_id: str) -> tuple[Path, dict]:
    """(directory, parsed COMPLETE marker); DatasetNotFound if either is missing."""
    path = dataset_path(root, dataset_id)
    if not path.is_dir():
        raise DatasetNotFound(f"{path}: dataset '{dataset_id}' not found (no directory)")
    marker = path / MARKER_FILE
    if not marker.is_file():
        raise DatasetNotFound(f"{marker}: dataset is incomplete: no completion marker "
                              "(a write was interrupted or is in progress)")
    try:
        return path, json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError) as e:
        _fail(marker, f"unreadable completion marker ({e})")


def _read_sidecar(path: Path) -> dict:
    f = path / METADATA_FILE
    if not f.is_file():
        _fail(f, "missing metadata file")
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        _fail(f, f"unreadable metadata JSON ({e})")


def load_dataset(root: str | Path, dataset_id: str, expect: Mapping[str, Any] | None = None
                 ) -> tuple[dict[str, np.ndarray], dict]:
    """Loads the flat cache (fast path) and validates it.

    Returns (arrays, metadata): arrays as in the module docstring (numpy, float32 / bool),
    metadata the caller's dict plus STORE_KEYS. Raises DatasetError naming the file and
    the problem for a missing or incomplete dataset, missing file or array, wrong dtype or
    shape, non-finite value (field and first bad index), broken episode boundary, or
    missing metadata keys, metadata other than `expect` ({key: value} of EXPECT_KEYS), a
    file whose size or checksum differs from the one recorded at write (so the Minari
    files and the flat cache stay the same data). DatasetNotFound if there is no dataset.
    """
    path, marker = _check_complete(root, dataset_id)
    cache = path / CACHE_FILE
    if not cache.is_file():
        _fail(cache, "missing flat cache file")
    try:
        with np.load(cache, allow_pickle=False) as z:
            arrays = {k: z[k] for k in FIELDS if k in z.files}
    except DatasetError:
        raise
    except Exception as e:
        _fail(cache, f"unreadable flat cache ({type(e).__name__}: {e})")
    validate_arrays(arrays, cache)
    meta = _read_sidecar(path)
    _validate_metadata(meta, arrays, path / METADATA_FILE)
    check_expected(meta, expect, path / METADATA_FILE)
    check_digests(path, marker)   # after the content checks, whose messages say more
    return arrays, meta


def load_dataset_minari(root: str | Path, dataset_id: str) -> tuple[dict[str, np.ndarray], dict]:
    """Same result as `load_dataset`, read through Minari's API (slow: per-episode Python).

    Uses ``minari.MinariDataset(<root>/<dataset_id>/data)`` (what ``minari.load_dataset``
    opens) so no environment variable is touched; metadata comes from Minari's "reda" key.
    """
    import minari

    path, _ = _check_complete(root, dataset_id)
    data_dir = path / MINARI_DIR
    if not (data_dir / "main_data.hdf5").is_file():
        _fail(data_dir / "main_data.hdf5", "missing Minari data file")
    try:
        mds = minari.MinariDataset(data_dir)
        meta = mds.storage.metadata.get("reda")
        parts = {k: [] for k in FIELDS}
        for ep in mds.iterate_episodes():
            parts["observations"].append(ep.observations[:-1])
            parts["next_observations"].append(ep.observations[1:])
            parts["actions"].append(ep.actions)
            parts["rewards"].append(ep.rewards)
            parts["terminals"].append(ep.terminations)
            parts["truncations"].append(ep.truncations)
    except Exception as e:
        _fail(data_dir, f"Minari could not read the dataset ({type(e).__name__}: {e})")
    if not parts["rewards"]:
        _fail(data_dir, "Minari dataset holds no episodes")
    arrays = {k: np.concatenate(v).astype(np.float32 if k in FLOAT_FIELDS else np.bool_,
                                          copy=False)
              for k, v in parts.items()}
    validate_arrays(arrays, data_dir)
    _validate_metadata(meta, arrays, data_dir / "metadata.json")
    return arrays, meta


def to_transitions(arrays: Mapping[str, Any], xp=np) -> Transitions:
    """Flat arrays -> `Transitions` with float32 masks; `xp` is numpy (default) or jax.numpy."""
    return Transitions(**{k: xp.asarray(arrays[k], dtype=xp.float32) for k in FIELDS})
