#!/usr/bin/env bash
# Every measurement in docs/, in one go, on the shipped model (2 cores; takes about 40 minutes;
# VVenC results come from the anchor cache after the first run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p docs runs
$PY benchmarks/kodak_rd.py --markdown docs/kodak_rd.md
$PY benchmarks/kodak_rd.py --no-loop-filter --markdown docs/kodak_rd_nofilter.md
$PY benchmarks/ratematch.py --markdown docs/ratematch.md
$PY benchmarks/ratematch.py --no-loop-filter --markdown docs/ratematch_nofilter.md
$PY benchmarks/integer_decoder.py --markdown docs/integer_decoder.md
$PY benchmarks/cpu_kernels.py --limit 2 --markdown docs/cpu_kernels.md
$PY benchmarks/bitalloc.py --markdown docs/bitalloc.md
$PY benchmarks/chroma.py --models 5 6 7 8 10 --markdown docs/chroma.md
/usr/bin/time -f "eval wall time %e s" $PY -m codec.cli eval ../shared/data/kodak --codecs ours,vvc,hevc,jpeg \
    --out runs/eval-kodak --jobs 2 2> >(tee runs/eval-kodak.log >&2)
