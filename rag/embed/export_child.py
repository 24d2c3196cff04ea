"""`python -m rag.embed.export_child MODEL OUT_DIR none|int8`: one step of the one-time ONNX export, in a process
of its own (rag.embed.torch.export_in_child starts it). Exit 0 when done; EXPORT_REFUSED with the reason on the
last line of stdout when the model cannot be exported; anything else is a crash (its stderr says why).
"""

from __future__ import annotations

import sys

from rag.embed.torch import EXPORT_REFUSED, export_step

if __name__ == "__main__":
    problem = export_step(sys.argv[1], sys.argv[2], sys.argv[3])
    if problem:
        print(problem)
    sys.exit(EXPORT_REFUSED if problem else 0)
