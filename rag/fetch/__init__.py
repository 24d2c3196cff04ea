"""Stage 2, the network: Sources -> raw files in the store (fetch), over HTTP (http) and the arXiv API (arxiv),
each checked for what it claims to be (verify). The only stage that touches the network."""
