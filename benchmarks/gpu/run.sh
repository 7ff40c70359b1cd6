#!/usr/bin/env bash
# The GPU measurements and training runs, on the device machine (see benchmarks/gpu/README.md).
#
#   bash benchmarks/gpu/run.sh PART [PART ...]
#
#   check            nvidia-smi, `flexdownscale info`, the gpu-marked tests
#   speed            benchmarks/speed.py on FLEX-small, 128 x 128, batch 32 (fp32, bf16, sampling,
#                    FLOPs, fraction of each dtype's measured matmul peak) -> $OUT/speed_gpu.md
#   train-small      a short bf16 run of FLEX-small on ERA5 (issue 6)   -> $OUT/train-small.tar.gz
#   ship-kolmogorov  train the shipped kolmogorov-x8 (tiny preset)      -> $OUT/kolmogorov-x8.tar.gz
#   ship-era5        train the shipped era5-t2m-x4 (tiny preset)        -> $OUT/era5-t2m-x4.tar.gz
#
# Environment: OUT (results folder; the device tool sets it), STEPS (optimiser steps of a training
# part), MINUTES (each training launch stops cleanly after this many minutes, default 5, so a part
# ends well inside the device tool's 10-minute limit with its model exported; README.md, 2),
# PRESET (train-small's preset), BATCH (ship-* batch size), SPEED_ARGS (speed.py's case),
# THREADS (torch's CPU threads of every training launch, the probe's included; default: nproc).
# A CPU rehearsal of the plumbing (FLEXDOWNSCALE_TEST_DEVICE=cpu runs the gpu tests on the CPU):
#   OUT=runs/gpu-rehearsal STEPS=3 PRESET=tiny BATCH=8 FLEXDOWNSCALE_TEST_DEVICE=cpu \
#   SPEED_ARGS="--preset tiny --size 64 --batch 8 --repeats 1" bash benchmarks/gpu/run.sh check \
#   speed train-small ship-kolmogorov ship-era5
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 FLEXDOWNSCALE_SHARED_DATA=$PWD/device_data
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
PY=${PYTHON:-python3}
DEVICE_NAME='import torch
print(torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")'
THREADS=${THREADS:-$(nproc)}

launch() {  # launch [key=value ...]: one training process under `accelerate launch`, with THREADS
  # torch threads. Without --num_cpu_threads_per_process accelerate sets OMP_NUM_THREADS=1 on a
  # GPU machine; the throughput probe and the run it sizes go through this one launcher, so
  # both train with the same threads.
  $PY -m accelerate.commands.launch --num_processes 1 --num_cpu_threads_per_process "$THREADS" \
    -m flexdownscale.train "$@"
}

fitting_steps() {  # fitting_steps PART CONFIG BATCH [key=value ...]: optimiser steps that fit
  # MINUTES. A 40-step probe (no validation, no states; launched as the run is) measures training
  # samples/s: launches.jsonl's steady_train_samples_per_s, counted from the end of the first
  # optimiser step (whose one-time GPU set-up would make the rate, and the run, 2-4x too short),
  # else its train_samples_per_s (a package without the steady rate). 75 % of the time budget
  # goes to steps, the rest to validation, states and the export. The probe's output goes to
  # $OUT/probe-PART.log; a failed probe says so on stderr and returns non-zero.
  local part=$1 config=$2 batch=$3 status=0
  shift 3
  rm -rf runs/gpu/probe
  launch --config "$config" run_dir=runs/gpu/probe steps=40 "batch_size=$batch" eval_every=0 \
    checkpoint_every=0 logger='"none"' "$@" >"$OUT/probe-$part.log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    echo "$part: the 40-step throughput probe failed (exit $status); its output, last lines:" >&2
    tail -n 20 "$OUT/probe-$part.log" >&2
    echo "$part: skipped (whole log: \$OUT/probe-$part.log; set STEPS to skip the probe)" >&2
    return 1
  fi
  $PY - "$batch" "${MINUTES:-5}" <<'PYEOF'
import json, sys
batch, minutes = int(sys.argv[1]), float(sys.argv[2])
record = json.loads(open("runs/gpu/probe/launches.jsonl").read().splitlines()[-1])
rate = record.get("steady_train_samples_per_s")
if rate is None:
    rate = record["train_samples_per_s"]
print(max(40, int(0.75 * 60 * minutes * rate / batch) // 100 * 100))
PYEOF
}

train() {  # train NAME CONFIG STEPS KEEP_MODEL [key=value ...]; archive logs, timing (and model)
  local name=$1 config=$2 steps=$3 keep_model=$4
  shift 4
  local run=runs/gpu/$name start end
  rm -rf "$run"
  start=$(date +%s)
  launch --config "$config" "run_dir=$run" "steps=$steps" "time_limit_minutes=${MINUTES:-5}" \
    "$@" 2>&1 | tee "$OUT/$name.log"
  end=$(date +%s)
  {
    echo "name: $name"
    echo "command: accelerate launch --num_cpu_threads_per_process $THREADS" \
      "-m flexdownscale.train --config $config run_dir=$run" \
      "steps=$steps time_limit_minutes=${MINUTES:-5} $*"
    echo "wall_seconds: $((end - start))"
    echo "wall_minutes: $(awk "BEGIN { printf \"%.1f\", ($end - $start) / 60 }")"
    echo "device: $($PY -c "$DEVICE_NAME")"
    echo "torch: $($PY -c 'import torch; print(torch.__version__)')"
  } >"$run/gpu_run.txt"
  local skip=(--exclude "$name/checkpoints")
  [ "$keep_model" = yes ] || skip+=(--exclude "$name/model")  # FLEX-small is 200 MB in fp32
  tar -czf "$OUT/$name.tar.gz" -C runs/gpu "${skip[@]}" "$name"
}

failed=()
for part in "$@"; do
  echo "=== $part ($(date -u +%H:%M:%S))"
  case $part in
    check)
      # Every step records into check.txt and the call goes on (speed, train-small) whatever
      # the tests say: their exit status is the line "gpu tests: exit N".
      (nvidia-smi -L || echo "no nvidia-smi") | tee "$OUT/check.txt"
      $PY -c 'import sys, numpy, torch
print("python", sys.version.split()[0], "at", sys.executable)
print("numpy", numpy.__version__)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available",
      torch.cuda.is_available())' 2>&1 | tee -a "$OUT/check.txt" || true
      { echo "--- pip list"; $PY -m pip list 2>&1 || true; } >>"$OUT/check.txt"
      $PY -m flexdownscale.cli info 2>&1 | tee -a "$OUT/check.txt" || true
      status=0
      $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_devices.py \
        tests/data/test_data_degrade.py 2>&1 | tee -a "$OUT/check.txt" || status=$?
      echo "gpu tests: exit $status" | tee -a "$OUT/check.txt"
      [ "$status" -eq 0 ] || failed+=("check")
      ;;
    speed)
      # shellcheck disable=SC2086  # SPEED_ARGS is a list of options (rehearsals shrink the case)
      $PY benchmarks/speed.py ${SPEED_ARGS:---preset small --size 128 --batch 32} \
        --out "$OUT/speed_gpu.md"
      ;;
    train-small)
      train train-small benchmarks/configs/era5-t2m-x4.toml "${STEPS:-500}" no \
        "model.preset=${PRESET:-small}" precision=bf16 eval_every=100 checkpoint_every=250 \
        'data.paths=["device_data/era5_t2m_uk_2019-03-01_24.nc"]'
      ;;
    ship-kolmogorov)
      config=benchmarks/configs/kolmogorov-x8.toml batch=${BATCH:-32}
      data='data.paths=["device_data/kf_re1000.nc", "device_data/kf_re4000.nc"]'
      if ! steps=${STEPS:-$(fitting_steps "$part" "$config" "$batch" "$data")}; then
        failed+=("$part")
        continue
      fi
      train kolmogorov-x8 "$config" "$steps" yes "batch_size=$batch" \
        "eval_every=$(((steps + 3) / 4))" "checkpoint_every=$(((steps + 3) / 4))" "$data"
      ;;
    ship-era5)
      config=benchmarks/configs/era5-t2m-x4.toml batch=${BATCH:-64}
      data='data.paths=["device_data/era5_t2m_uk_2019-03-01_24.nc"]'
      if ! steps=${STEPS:-$(fitting_steps "$part" "$config" "$batch" "$data")}; then
        failed+=("$part")
        continue
      fi
      train era5-t2m-x4 "$config" "$steps" yes "batch_size=$batch" \
        "eval_every=$(((steps + 3) / 4))" "checkpoint_every=$(((steps + 3) / 4))" "$data"
      ;;
    *)
      echo "unknown part: $part (check | speed | train-small | ship-kolmogorov | ship-era5)" >&2
      exit 2
      ;;
  esac
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed parts: ${failed[*]} (see above and the logs in \$OUT)" >&2
  exit 1
fi
