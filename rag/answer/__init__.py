"""Stage 6, the answer above the passages: extractive (no network) or from an LLM with its citations checked;
the sentence splitter, stop list and stemmer they share (text)."""
