"""Dynamic batching: single images from concurrent requests run through the model together.

As Triton's and TorchServe's batchers do: the first image waits up to ``max_wait_s`` for others,
and a batch closes at ``max_batch`` images. One worker thread owns the model, so the runtime
never sees two calls at once and the event loop never runs a forward pass. A request thread
calls :meth:`DynamicBatcher.submit` and blocks on the returned future.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

import torch

Result = TypeVar("Result")


class DynamicBatcher(Generic[Result]):
    """``run`` maps a stacked batch (B, 3, S, S) to B results, one per image, in order."""

    def __init__(self, run: Callable[[torch.Tensor], Sequence[Result]], max_batch: int = 8, max_wait_s: float = 0.005):
        self.run, self.max_batch, self.max_wait_s = run, max_batch, max_wait_s
        self.pending: queue.Queue[tuple[torch.Tensor, Future] | None] = queue.Queue()
        self.batches = self.images = self.largest = 0  # counters for /healthz, tests and the benchmark
        self.closed = False
        self.worker = threading.Thread(target=self._loop, name="paddyclf-batcher", daemon=True)
        self.worker.start()

    def submit(self, image: torch.Tensor) -> Future:
        """Queue one image (3, S, S); the future's result is its entry of ``run``'s output."""
        if self.closed:
            raise RuntimeError("the batcher is closed (the server is shutting down)")
        future: Future = Future()
        self.pending.put((image, future))
        return future

    def stats(self) -> dict:
        return {"batches": self.batches, "images": self.images, "largest_batch": self.largest}

    def close(self) -> None:
        self.closed = True
        self.pending.put(None)
        self.worker.join(timeout=10)

    def _collect(self, first: tuple[torch.Tensor, Future]) -> tuple[list, bool]:
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self.pending.get(timeout=remaining) if remaining > 0 else self.pending.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _loop(self) -> None:
        closing = False
        while not closing:
            first = self.pending.get()
            if first is None:
                break
            batch, closing = self._collect(first)
            futures = [future for _, future in batch]
            try:
                results = self.run(torch.stack([image for image, _ in batch]))
                self.batches, self.images = self.batches + 1, self.images + len(batch)
                self.largest = max(self.largest, len(batch))
                for future, result in zip(futures, results, strict=True):
                    future.set_result(result)
            except Exception as exc:  # noqa: BLE001 - the requests get the error; the worker lives on
                for future in futures:
                    future.set_exception(exc)
