#!/usr/bin/env bash
# Every GPU check and benchmark of mlvgm, in one run on a CUDA machine (about 20 minutes on one H200, at
# the limits below; the first lease fitted sources at two batch sizes and train in 6 minutes):
#
#   bench/gpu_all.sh OUT_DIR [PART ...]      PARTs: tests kernels sources generators train (default: all)
#
#   tests       the GPU tests (Triton kernels compiled for the device, CUDA Philox streams, DALI's GPU
#               decode when DALI is installed) and the kernel tests, whose Triton side then runs on CUDA
#   kernels     bench/gpu_check.py: Triton kernels against fp64 references (fp32, bf16), their speed
#               against eager and compiled torch, peak memory -> OUT_DIR/kernels/gpu-check.{json,md}
#   sources     bench/bench_sources.py, one process per batch size, 210 s each (BigBiGAN's CS member
#               compiles twice; a batch that overruns loses only its own JSON), then bench.figure5 over
#               all of them -> OUT_DIR/sources/; MLVGM_BENCH_SOURCES to choose sources
#   generators  bench/bench_generators.py at full size (StyleGAN2 512 px, BigBiGAN 128 px): eager,
#               compiled, CUDA graphs, bf16 -> OUT_DIR/generators.json
#   train       the quickstart (python -m mlvgm.train) on CUDA: Continuous Sampling, bf16, Triton InfoNCE
#
# Each part runs under its own time limit and prints its exit status and seconds; a failed part does
# not stop the next. $PYTHON (default python3) runs everything; $MLVGM_BENCH_WORKERS (default 8) sets
# the loaders' workers; $MLVGM_GPU_BATCHES (default "32 256 64 128") the sources part's batch sizes, in order.
set -uo pipefail
out=${1:?usage: bench/gpu_all.sh OUT_DIR [tests kernels sources generators train]}
shift
parts=${*:-tests kernels sources generators train}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/.cache/inductor}
export MLVGM_BENCH_WORKERS=${MLVGM_BENCH_WORKERS:-8}
batches=${MLVGM_GPU_BATCHES:-32 256 64 128}
xdist=$("$py" -c "import xdist" 2>/dev/null && echo "-n 6")  # pytest-xdist, when installed

run() {  # run NAME LIMIT_S COMMAND...: one part's step, timed, never fatal
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "== $name (limit ${limit} s): $*"
    timeout "$limit" "$@"
    echo "== $name: exit $? after $((SECONDS - start)) s"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
"$py" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__,
torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA')"

for part in $parts; do
    case $part in
    tests)
        run tests 300 "$py" -m pytest -q -p no:cacheprovider $xdist tests/kernels \
            tests/mlvgm/test_streams.py tests/mlvgm/data/test_dali.py ;;
    kernels)
        run kernels 300 "$py" bench/gpu_check.py --out "$out/kernels" ;;
    sources)
        mkdir -p "$out/sources"
        for batch in $batches; do
            MLVGM_BENCH_BATCHES=$batch run "sources-batch$batch" 210 "$py" -m pytest -q -p no:cacheprovider \
                bench/bench_sources.py --benchmark-json "$out/sources/batch$batch.json"
        done
        jsons=$(ls "$out"/sources/batch*.json 2>/dev/null)
        [ -n "$jsons" ] && run figure5 60 "$py" -m bench.figure5 $jsons --out "$out/sources" ;;
    generators)
        MLVGM_BENCH_FULL=1 run generators 240 "$py" -m pytest -q -p no:cacheprovider bench/bench_generators.py \
            --benchmark-json "$out/generators.json" ;;
    train)
        # the run folder (checkpoints) in a scratch folder; its summary, metrics and plots in OUT_DIR/train
        run train 120 "$py" -m mlvgm.train --out "$(mktemp -d)/run" --results "$out/train" ;;
    *)
        echo "unknown part $part: choose from tests kernels sources generators train" >&2 ;;
    esac
done
