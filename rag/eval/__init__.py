"""How good is retrieval: ranking metrics, gold questions and the build gate, BEIR datasets through the
product's own pipeline."""
