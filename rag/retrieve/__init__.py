"""Stage 5, retrieval: a question (query) -> ranked, filtered, capped hits over a Snapshot (search) -> Passages
with Citations (cite)."""
