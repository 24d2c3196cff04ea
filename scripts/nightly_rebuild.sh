#!/usr/bin/env bash
# Nightly job: sync the index with the reading list, quietly. Exit non-zero when the build fails.
#
# Output goes to $RAG_HOME/logs/nightly-YYYYMMDD.log (RAG_HOME defaults to ./index of the checkout).
# With seeds/gold.jsonl (or RAG_GOLD) present, the build is gated: a snapshot whose gold-question metrics
# fall below the published one's is not published, and the last good index keeps serving.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
rag_bin="${RAG_BIN:-$repo/.venv/bin/rag}"
home="${RAG_HOME:-$repo/index}"
gold="${RAG_GOLD:-$repo/seeds/gold.jsonl}"
mkdir -p "$home/logs"
log="$home/logs/nightly-$(date -u +%Y%m%d).log"

args=(build --quiet --home "$home")
if [ -f "$gold" ]; then
  args+=(--gate "$gold")
fi

{
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) rag ${args[*]}"
  status=0
  "$rag_bin" "${args[@]}" || status=$?
  echo "== exit $status"
} >>"$log" 2>&1

# Keep a month of logs.
find "$home/logs" -name 'nightly-*.log' -mtime +31 -delete 2>/dev/null || true
exit "${status:-0}"
