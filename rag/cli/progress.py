"""Progress bars for long stages on a terminal (tqdm); silent otherwise. Library code only calls `update`."""

from __future__ import annotations


class Bars:
    """One tqdm bar per stage, created on the stage's first update. Use as a context manager."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bars: dict = {}

    def update(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(total=total, desc=f"{stage:<8}", unit="", leave=True, dynamic_ncols=True)
        bar.total = total
        bar.n = done
        bar.refresh()

    def __enter__(self) -> "Bars":
        return self

    def __exit__(self, *exc) -> None:
        for bar in self._bars.values():
            bar.close()


class SourceBar:
    """One tqdm bar over the sources of a fetch, naming the last one done; silent when disabled. A context manager."""

    def __init__(self, total: int, enabled: bool):
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc="fetch", unit="source", dynamic_ncols=True)

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def update(self, source_id: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(source_id[-30:], refresh=False)
            self._bar.update(1)

    def __enter__(self) -> "SourceBar":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
