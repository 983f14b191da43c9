#!/usr/bin/env bash
# One prepared accelerator run (see experiments/device_check.py).
#
#   bash launch/device_check.sh            # on a machine with an NVIDIA GPU: paper shapes
#   bash launch/device_check.sh --tiny     # anywhere (CPU, CI): smoke shapes
#   OUT=dir bash launch/device_check.sh    # where device_check.{json,md} go (or --out=dir)
#
# With a GPU (nvidia-smi lists one) and without --tiny it first makes a fresh venv next to
# the project (../.venv-cuda) with jax[cuda12] and the project installed. If that install
# fails (no network: e.g. the lent H200 machines reach nothing outside), it falls back to
# the first Python already at hand whose jax sees a GPU (then this project's other needs,
# mujoco, gymnasium, flax, optax, orbax, must be importable there, e.g. carried as wheels),
# and says so. Without a GPU it uses the current python3.
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
py="${PYTHON:-python3}"
tiny=0
for a in "$@"; do [[ "$a" == "--tiny" ]] && tiny=1; done

if [[ $tiny == 0 ]] && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  venv="$here/../.venv-cuda"
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import jax; assert jax.default_backend() == 'gpu'" 2>/dev/null; then
    online=0
    timeout 8 python3 -c "import urllib.request; urllib.request.urlopen('https://pypi.org/simple/jax/', timeout=6)" 2>/dev/null && online=1
    if [[ $online == 1 ]]; then echo "[device_check] installing jax[cuda12] + the project into $venv"; fi
    if [[ $online == 1 ]] && python3 -m venv "$venv" && timeout 300 "$venv/bin/pip" install -q "jax[cuda12]" -e "$here"; then
      py="$venv/bin/python"
    else
      echo "[device_check] install failed (no network?): falling back to a Python at hand"
      for cand in "$py" python3 /opt/torch/.venv/bin/python3; do
        if command -v "$cand" >/dev/null && "$cand" -c "import jax; assert jax.default_backend() == 'gpu'" 2>/dev/null; then
          py="$cand"; break
        fi
      done
    fi
  else
    py="$venv/bin/python"
  fi
  echo "[device_check] using $py ($("$py" -c 'import jax; print(jax.__version__, jax.devices())' 2>&1 | tail -1))"
fi
missing=$("$py" - <<'PY'
import importlib.util
names = ["jax", "flax", "optax", "chex", "orbax.checkpoint", "mujoco", "gymnasium", "absl", "tqdm"]
print(" ".join(n for n in names if importlib.util.find_spec(n.split(".")[0]) is None))
PY
)
if [[ -n "$missing" ]]; then
  echo "[device_check] $py lacks: $missing (carry them as wheels: /work/.library/device/README.md)" >&2
  exit 3
fi
# The prepared run must end within 8 minutes; --tiny (CI, a shared CPU) gets longer.
limit=480; [[ $tiny == 1 ]] && limit=1500
exec timeout $limit "$py" -m experiments.device_check "$@"
