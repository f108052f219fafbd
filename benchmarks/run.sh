#!/usr/bin/env bash
# The exact commands behind the committed results (run from the repository root with
# ../shared beside it: ./dev bench). Each writes its JSON next to this script.
set -euo pipefail
cd "$(dirname "$0")/.."
M=.venv/bin/memstrata
DATA=${MEMSTRATA_BENCH_DATA:-../shared/bench}
OUT=benchmarks/results
mkdir -p "$OUT"
# Default (episodes + derived notes), the core engine without notes (episodic), graph
# recall on, the semantic switches one at a time, and the single-retriever floors.
VARIANTS="hybrid;episodic;hybrid:dense_drop_speakers=false;episodic:dense_drop_speakers=false;graph;hybrid:refresh_window=0;hybrid:refresh_cos=1.0,refresh_window=0;hybrid:refresh_factor=0.7;hybrid:superseded_factor=1.0,refresh_cos=1.0;hybrid:diversity=0.2;hybrid:fusion=rrf;bm25;dense"
$M bench longmemeval "$DATA/longmemeval_s_dev.json.gz" --variant "$VARIANTS" --out "$OUT/longmemeval_s_dev.json"
$M bench locomo "$DATA/locomo_dev.json.gz" --variant "$VARIANTS" --out "$OUT/locomo_dev.json"
# Ingest speed of the core engine alone (no notes), for the 2x budget of note extraction.
$M bench locomo "$DATA/locomo_dev.json.gz" --no-notes --variant episodic --out "$OUT/locomo_dev_no_notes.json"
$M bench latency "$DATA/longmemeval_s_dev.json.gz" --sessions 500 --out "$OUT/latency_500_sessions.json"
# Serving under load: the REST server (SQLite) in a child process on loopback, 2 writer and
# 4 reader clients for 60 s, then every acknowledged write read back (exits 1 on a lost
# write, a 5xx or an unanswered request).
$M bench serve --duration 60 --path "$DATA/locomo_dev.json.gz" --out "$OUT/serve_60s.json"
# Hostile input: coverage-guided fuzzing (atheris) of the parsers of untrusted input, 120 s
# per target (exits 1 if any input raised something other than a MemstrataError).
$M bench fuzz --seconds 120 --seed 1 --crash-dir fuzz-crashes --out "$OUT/fuzz_120s.json"
# Cost against memory size (issue #5): synthetic conversational memory (composed vectors),
# a fresh store per size; PostgreSQL on a throwaway embedded server. Then the plot.
$M bench perf --store sqlite --sizes 10000,100000,1000000 --json --out "$OUT/perf_sqlite.json" > /dev/null
$M bench perf --store postgres --sizes 10000,100000,1000000 --json --out "$OUT/perf_postgres.json" > /dev/null
$M bench perf --from-json "$OUT/perf_sqlite.json" --from-json "$OUT/perf_postgres.json" --plot "$OUT/perf_latency.svg" --json > /dev/null
