"""The vector cache of the build: vectors by chunk hash, one SQLite file per model fingerprint
(`<home>/cache/embeddings/<fp>.sqlite`, made by `Home.embedding_cache`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np


class EmbeddingCache:
    """Vectors keyed by chunk hash for one model fingerprint: an unchanged chunk is never embedded twice.

    A damaged cache is never trusted: a database that does not open is replaced by an empty one, and a vector
    that is not unit length (every encoder's vectors are) counts as missing, so it is encoded again.
    A context manager: `with home.embedding_cache(fingerprint) as cache: ...` closes the database.
    """

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError:
            self._db = self._reset()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS vectors (hash TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _reset(self) -> sqlite3.Connection:
        """Drop a damaged database (and its WAL) and start an empty one: its vectors are recomputed."""
        if getattr(self, "_db", None) is not None:
            self._db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        return self._connect()

    def get_many(self, hashes: list[str], dim: int) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        try:
            for start in range(0, len(hashes), 500):
                batch = hashes[start : start + 500]
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(f"SELECT hash, vector FROM vectors WHERE hash IN ({marks})", batch)
                for digest, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    norm = float(np.dot(vector, vector)) if vector.shape[0] == dim else -1.0
                    if abs(norm - 1.0) < 1e-3 or norm == 0.0:
                        found[digest] = vector
        except sqlite3.DatabaseError:
            self._db = self._reset()
            return {}
        return found

    def put_many(self, hashes: list[str], vectors: np.ndarray) -> None:
        rows = [(h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in zip(hashes, vectors, strict=True)]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "EmbeddingCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
