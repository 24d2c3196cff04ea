"""The disk: every path and file format under RAG_HOME (home), one built index (snapshot) with its FAISS and
BM25 files (index), model folders and their ONNX exports (models), and the user's own files (files)."""
