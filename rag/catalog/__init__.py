"""Stage 1, the reading list: markdown -> Sources (catalog), what each link names (links), and `rag add`."""
