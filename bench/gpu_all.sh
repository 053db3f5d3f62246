#!/usr/bin/env bash
# Every GPU check and benchmark of mlvgm on a CUDA machine, most important first, each part under its own
# time limit, so that a 15-minute lease (machine start and compiles included) returns the first tables
# even when it cannot finish the rest:
#
#   bench/gpu_all.sh OUT_DIR [PART ...]      PARTs, in the default order (limits in seconds):
#
#   sources     (2 x 150) bench/bench_sources.py at batch 32 and 256, one process each, without the real
#               generators: CS against the DataLoader, DALI and FFCV (images/s) and the training step fed
#               by each against the resident limit -> OUT_DIR/sources/ (+ bench.figure5's tables)
#   cs_step     (120) bench/bench_cs_step.py: the compiled CS step (CUDA graph, side stream) against the same
#               step called eagerly at batch 8 and 256, and its ops outside graphs -> OUT_DIR/cs-step.json
#   generators  (3 x 100) bench/bench_generators.py at full size, one process per network (StyleGAN2 512 px,
#               BigBiGAN 128 px, StyleGAN2 256 px): eager fp32, compiled, CUDA graphs, bf16 -> OUT_DIR/generators-*.json
#   real        (2 x 120) bench_sources' CS over BigBiGAN 128 px and StyleGAN2 256 px (bf16, compiled,
#               CUDA graphs) at batch 32 and 256 -> OUT_DIR/sources/real-batch*.json, into Figure 5
#   tests       (180) the GPU tests (Triton kernels, CUDA Philox streams, DALI's GPU decode) and the
#               kernel tests, whose Triton side then runs on CUDA
#   kernels     (180) bench/gpu_check.py: Triton kernels against fp64 references, their speed and memory
#   train       (120) the quickstart (python -m mlvgm.train) on CUDA
#   miniature   (600, not in the default list: a lease of its own) the pre-registered miniature at GPU scale:
#               arms S, M, P, N x 8 seeds, width 64, batch 256, 1,000 steps each, seed by seed, one CSV row
#               per finished run in OUT_DIR/miniature/runs.csv (a time limit still returns whole pairs)
#   miniature-ssl (2 x 600, not in the default list) the same for SimSiam and BYOL, with their collapse
#               monitor -> OUT_DIR/miniature-simsiam, OUT_DIR/miniature-byol
#
# One call may run 600 s: on a lease, run `sources cs_step` first, then `generators real`, then the rest.
# A failed part does not stop the next. $PYTHON (default python3) runs everything; $MLVGM_BENCH_WORKERS
# (default 8) sets the loaders' workers; $MLVGM_GPU_BATCHES (default "32 256") the batch sizes.
set -uo pipefail
out=${1:?usage: bench/gpu_all.sh OUT_DIR [sources cs_step generators real tests kernels train]}
shift
parts=${*:-sources cs_step generators real tests kernels train}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/.cache/inductor}
export MLVGM_BENCH_WORKERS=${MLVGM_BENCH_WORKERS:-8}
batches=${MLVGM_GPU_BATCHES:-32 256}
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

figure5() {  # bench.figure5 over every sources JSON so far: the CS-vs-loaders tables with the real generators
    local jsons
    jsons=$(ls "$out"/sources/*batch*.json 2>/dev/null)
    [ -n "$jsons" ] && run figure5 60 "$py" -m bench.figure5 $jsons --out "$out/sources"
}

for part in $parts; do
    case $part in
    sources)
        mkdir -p "$out/sources"
        for batch in $batches; do
            MLVGM_BENCH_SOURCES=cs,cs-paper,imagefolder,dali,ffcv MLVGM_BENCH_BATCHES=$batch run "sources-batch$batch" 150 \
                "$py" -m pytest -q -p no:cacheprovider bench/bench_sources.py --benchmark-json "$out/sources/batch$batch.json"
        done
        figure5 ;;
    cs_step)
        run cs_step 120 "$py" -m pytest -q -p no:cacheprovider bench/bench_cs_step.py --benchmark-json "$out/cs-step.json" ;;
    generators)
        for net in stylegan2 bigbigan stylegan2-256; do
            MLVGM_BENCH_FULL=1 MLVGM_BENCH_NETWORKS=$net run "generators-$net" 100 "$py" -m pytest -q -p no:cacheprovider \
                bench/bench_generators.py --benchmark-json "$out/generators-$net.json"
        done ;;
    real)
        mkdir -p "$out/sources"
        for batch in $batches; do
            MLVGM_BENCH_SOURCES=cs-bigbigan,cs-stylegan2 MLVGM_BENCH_BATCHES=$batch run "real-batch$batch" 120 \
                "$py" -m pytest -q -p no:cacheprovider bench/bench_sources.py -k test_data_path \
                --benchmark-json "$out/sources/real-batch$batch.json"
        done
        figure5 ;;
    tests)
        run tests 180 "$py" -m pytest -q -p no:cacheprovider $xdist tests/kernels \
            tests/mlvgm/test_streams.py tests/mlvgm/data/test_dali.py tests/mlvgm/data/test_step_graph.py ;;
    kernels)
        run kernels 180 "$py" bench/gpu_check.py --out "$out/kernels" ;;
    train)
        # the run folder (checkpoints) in a scratch folder; its summary, metrics and plots in OUT_DIR/train
        run train 120 "$py" -m mlvgm.train --out "$(mktemp -d)/run" --results "$out/train" ;;
    miniature)
        # the checkpoints in a scratch folder; the published jobs, runs.csv and the tests in OUT_DIR/miniature
        run miniature 600 "$py" -m mlvgm.experiments miniature --device cuda --width 64 --batch 256 --budget 1000 \
            --seeds 8 --out "$out/miniature" --runs "$(mktemp -d)/runs" ;;
    miniature-ssl)
        for method in simsiam byol; do
            run "miniature-$method" 600 "$py" -m mlvgm.experiments miniature --method $method --device cuda \
                --width 64 --batch 256 --budget 1000 --seeds 8 --out "$out/miniature-$method" --runs "$(mktemp -d)/runs"
        done ;;
    *)
        echo "unknown part $part: choose from sources cs_step generators real tests kernels train miniature miniature-ssl" >&2 ;;
    esac
done
