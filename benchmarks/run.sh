#!/usr/bin/env bash
# The exact commands behind the committed results (run from the repository root with
# ../shared beside it: ./dev bench). Each writes its JSON next to this script.
set -euo pipefail
cd "$(dirname "$0")/.."
M=.venv/bin/memstrata
DATA=${MEMSTRATA_BENCH_DATA:-../shared/bench}
OUT=benchmarks/results
mkdir -p "$OUT"
$M bench longmemeval "$DATA/longmemeval_s_dev.json.gz" \
  --variant "hybrid;hybrid:prf_terms=0;hybrid:fusion=rrf;bm25;dense;hybrid:time_mode=off;hybrid:session_dense=false;hybrid:hide_future=true" \
  --out "$OUT/longmemeval_s_dev.json"
$M bench locomo "$DATA/locomo_dev.json.gz" \
  --variant "hybrid;hybrid:prf_terms=0;hybrid:fusion=rrf;bm25;dense;hybrid:neighbor_weight=0;hybrid:speaker_boost=0;hybrid:time_mode=off;hybrid:drop_speaker_terms=true" \
  --out "$OUT/locomo_dev.json"
$M bench latency "$DATA/longmemeval_s_dev.json.gz" --sessions 500 --out "$OUT/latency_500_sessions.json"
