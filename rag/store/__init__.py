"""The disk: every path and file format under RAG_HOME (home), one built index (snapshot) with its FAISS and
BM25 files (index), model folders and their ONNX exports (models), the local files a list names (files), and the
JSON form of the records (codec)."""
