"""Stage 1, the reading list: markdown -> Sources (catalog), what each link names (links), and `rag add`."""

DEFAULT_SECTION = "Local papers"  # the heading `rag add` puts new entries under when given none
