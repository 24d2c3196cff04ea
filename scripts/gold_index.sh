#!/usr/bin/env bash
# The reproducible index the gold questions are scored on: the real seed list, built offline with the twelve seed
# papers as PDFs (the rest of the list stays as the list's own titles), plus the thirteen papers of pdfs_more added
# with `rag add` to a copy of the list -- all 25 papers in one index, as a user holding those PDFs would have.
# Then `rag eval --gold seeds/gold.jsonl` (extra arguments go to it: --split dev, --json).
#
#   scripts/gold_index.sh                    # into $RAG_HOME, default /tmp/rag-gold (reused: a rebuild is incremental)
#   RAG_HOME=/tmp/x scripts/gold_index.sh --split dev
set -euo pipefail
cd "$(dirname "$0")/.."
RAG=${RAG:-$(command -v rag || echo .venv/bin/rag)}
SHARED_DATA=${RAG_SHARED:-../shared}/data
export RAG_HOME=${RAG_HOME:-/tmp/rag-gold}
mkdir -p "$RAG_HOME"
LIST="$RAG_HOME/reading_list.md"
cp seeds/reading_list.md "$LIST"
"$RAG" add "$SHARED_DATA/pdfs_more" --list "$LIST" >/dev/null
export RAG_LIST_PATH="$LIST" RAG_OFFLINE=1
export RAG_PDF_DIRS="$SHARED_DATA/seed_pdfs:$SHARED_DATA/pdfs_more"
"$RAG" build --quiet | tail -n 3 >&2 || true  # offline, the list's other sources fail to fetch: exit 1 is expected
"$RAG" eval --gold seeds/gold.jsonl "$@"
