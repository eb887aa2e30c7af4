"""Dynamic batching: concurrent requests share model calls.

The model is called from a single thread (TensorFlow uses the cores inside
one call). While it runs, new requests queue; the next batch takes them all,
up to ``max_batch`` drawings. When the model is idle a request waits at most
``max_wait_s`` for others to join it, as TF Serving's ``batch_timeout_micros``,
but only while another request is being read or the last batch held several
requests (concurrent clients, whose next requests are on their way): a lone
client does not wait for nobody, and concurrent ones still share calls.
The queue is bounded: past ``max_queue`` waiting drawings a request is
refused at once (``Overloaded``) rather than letting memory and latency grow.

A call is padded to its longest drawing and costs about its padded steps, so
a batch is cut into calls by length (``plan_calls``), shortest first: a short
drawing is not held up by a long one that arrived with it, and padding is not
computed. A request's drawings (up to ``max_batch``) stay in one call, so a
request served alone gets exactly what the export's signature gives it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from typing import Callable, Iterator

import numpy as np

# The cost of a call in drawing-steps (one drawing through one point of the
# model): a step of a call costs about STEP_COST drawings' steps beyond its
# drawings, and a call CALL_COST drawing-steps beyond its steps (the default
# 344-class model on 2 CPU cores: 0.13 ms + 0.027 ms per drawing per step).
STEP_COST = 5
CALL_COST = 20


class Overloaded(Exception):
    """More drawings are waiting than the queue holds."""


def plan_calls(lengths: list[int], sizes: list[int], step_cost: float = STEP_COST,
               call_cost: float = CALL_COST) -> list[list[int]]:
    """Indices of units (a unit: ``sizes[i]`` drawings padded to ``lengths[i]``
    points) cut into calls, shortest first, minimising the estimated total cost
    ``sum(call_cost + longest * (step_cost + drawings))`` over the calls."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    drawings = [0]
    for i in order:
        drawings.append(drawings[-1] + sizes[i])
    best, cut = [0.0], [0]
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        cost, start = min((best[s] + call_cost + longest * (step_cost + drawings[end] - drawings[s]),
                           s) for s in range(end))
        best.append(cost)
        cut.append(start)
    calls, end = [], len(order)
    while end:
        calls.append(order[cut[end]:end])
        end = cut[end]
    return calls[::-1]


class Batcher:
    def __init__(self, predict: Callable[[list[np.ndarray]], np.ndarray], max_batch: int = 64,
                 max_wait_s: float = 0.002, max_queue: int = 1024):
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._queue: asyncio.Queue | None = None
        self._carried: tuple | None = None  # taken from the queue, for the next batch
        self._waiting = 0  # drawings queued or carried
        self._reading = 0  # requests being read, which may join a batch
        self._concurrent = False  # the last batch held several requests
        self._worker: asyncio.Task | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
        self.batches = 0
        self.calls = 0
        self.drawings = 0

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=False)

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Marks a request as being read, so an idle model waits for it to join."""
        self._reading += 1
        try:
            yield
        finally:
            self._reading -= 1

    async def submit(self, drawings: list[np.ndarray]) -> np.ndarray:
        """Probabilities of one request's drawings (which may span several batches)."""
        if self._waiting + len(drawings) > self.max_queue:
            raise Overloaded("%d drawings already wait for the model" % self._waiting)
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(drawings), self.max_batch):
            futures.append(loop.create_future())
            self._queue.put_nowait((drawings[start:start + self.max_batch], futures[-1]))
        self._waiting += len(drawings)
        return np.concatenate(await asyncio.gather(*futures))

    async def _next_unit(self, deadline: float) -> tuple | None:
        """The next queued unit, waiting until ``deadline`` while others may come;
        None when nothing more will join this batch."""
        if self._queue.empty():
            await asyncio.sleep(0)  # requests already received get to submit
        while self._queue.empty():
            left = deadline - time.monotonic()
            if left <= 0 or not (self._reading or self._concurrent):
                return None
            try:
                return await asyncio.wait_for(self._queue.get(), min(left, 0.0002))
            except asyncio.TimeoutError:
                continue
        return self._queue.get_nowait()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = self._carried or await self._queue.get()
            self._carried = None
            units, size = [first], len(first[0])
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch:
                unit = await self._next_unit(deadline)
                if unit is None:
                    break
                if size + len(unit[0]) > self.max_batch:
                    self._carried = unit
                    break
                units.append(unit)
                size += len(unit[0])
            self._waiting -= size
            self._concurrent = len(units) > 1
            live = [u for u in units if not u[1].done()]  # a client that left
            if live:
                self.batches += 1
            for call in plan_calls([max(len(d) for d in u[0]) for u in live],
                                   [len(u[0]) for u in live]):
                await self._call(loop, [live[i] for i in call])

    async def _call(self, loop: asyncio.AbstractEventLoop, units: list[tuple]) -> None:
        """One model call over ``units``; each unit's future gets its rows."""
        drawings = [d for chunk, _ in units for d in chunk]
        try:
            probabilities = await loop.run_in_executor(self._executor, self._predict, drawings)
        except Exception as e:  # the model failed this call: its requests get a 500
            for _, future in units:
                if not future.done():
                    future.set_exception(e)
            return
        self.calls += 1
        self.drawings += len(drawings)
        start = 0
        for chunk, future in units:
            if not future.done():
                future.set_result(probabilities[start:start + len(chunk)])
            start += len(chunk)
