"""Dynamic batching: concurrent requests share one model call.

The model is called from a single thread (TensorFlow uses the cores inside
one call). While it runs, new drawings queue; the next call takes them all,
up to ``max_batch``. When the model is idle a request waits at most
``max_wait_s`` for others to join it, as TF Serving's ``batch_timeout_micros``.
The queue is bounded: past ``max_queue`` waiting drawings a request is
refused at once (``Overloaded``) rather than letting memory and latency grow.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Callable

import numpy as np


class Overloaded(Exception):
    """More drawings are waiting than the queue holds."""


class Batcher:
    def __init__(self, predict: Callable[[list[np.ndarray]], np.ndarray], max_batch: int = 64,
                 max_wait_s: float = 0.002, max_queue: int = 1024):
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
        self.batches = 0
        self.drawings = 0

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=False)

    async def submit(self, drawings: list[np.ndarray]) -> np.ndarray:
        """Probabilities of one request's drawings (which may span several batches)."""
        if self._queue.qsize() + len(drawings) > self.max_queue:
            raise Overloaded("%d drawings already wait for the model" % self._queue.qsize())
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in drawings]
        for drawing, future in zip(drawings, futures):
            self._queue.put_nowait((drawing, future))
        return np.stack(await asyncio.gather(*futures))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            deadline = time.monotonic() + self.max_wait_s
            while len(items) < self.max_batch:
                if not self._queue.empty():
                    items.append(self._queue.get_nowait())
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            live = [(d, f) for d, f in items if not f.done()]  # a client that left
            if not live:
                continue
            try:
                probabilities = await loop.run_in_executor(
                    self._executor, self._predict, [d for d, _ in live])
            except Exception as e:  # the model failed this batch: its requests get a 500
                for _, future in live:
                    if not future.done():
                        future.set_exception(e)
                continue
            self.batches += 1
            self.drawings += len(live)
            for (_, future), p in zip(live, probabilities):
                if not future.done():
                    future.set_result(p)
