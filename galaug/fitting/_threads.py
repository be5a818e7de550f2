"""One BFGS per image, in threads, with the model evaluations of all images in flight batched into one call."""

from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Callable

import numpy as np
import scipy.optimize

__all__ = ["Rendezvous", "minimize_all"]


class Rendezvous:
    """Collects the objective calls of optimisers running in threads into one batched evaluation.

    Every worker thread runs its own ``scipy.optimize.minimize``; its
    objective hands the parameter vector here (:meth:`__call__`) and waits.
    The thread in :meth:`serve` (the caller's) waits until every active
    worker is waiting, evaluates them all in one call of
    ``evaluate(indices, P) -> (f, grad)`` and wakes them. Evaluating in one
    thread keeps torch's large temporary buffers in one allocator arena
    (with glibc, each thread that allocates them would keep its own copy).
    Two conditions on one lock: a submission wakes only the server, a batch
    of results wakes the workers once.
    """

    def __init__(self, evaluate: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                 workers: int) -> None:
        self._evaluate = evaluate
        lock = threading.Lock()
        self._to_server, self._to_workers = threading.Condition(lock), threading.Condition(lock)
        self._pending: dict[int, tuple[int, np.ndarray]] = {}
        self._results: dict[int, tuple[float, np.ndarray]] = {}
        self._active = workers
        self._error: BaseException | None = None
        self.batches = 0

    @property
    def error(self) -> BaseException | None:
        """The exception an evaluation raised, if any."""
        return self._error

    def __call__(self, worker: int, index: int, p: np.ndarray) -> tuple[float, np.ndarray]:
        """The value and gradient for image ``index`` at ``p`` (called by worker ``worker``)."""
        with self._to_workers:
            if self._error is None:
                self._pending[worker] = (index, np.array(p, dtype=np.float64))
                if len(self._pending) == self._active:
                    self._to_server.notify()
            while worker not in self._results and self._error is None:
                self._to_workers.wait()
            if self._error is not None:
                raise RuntimeError("the batched model evaluation failed") from self._error
            return self._results.pop(worker)

    def leave(self) -> None:
        """A worker has no more images to fit."""
        with self._to_server:
            self._active -= 1
            self._to_server.notify()

    def serve(self) -> None:
        """Evaluate batches until every worker has left (or an evaluation failed: see :attr:`error`)."""
        while True:
            with self._to_server:
                while self._active > 0 and (not self._pending or len(self._pending) < self._active):
                    self._to_server.wait()
                if self._active == 0:
                    return
                items = list(self._pending.items())
                self._pending.clear()
            try:
                f, g = self._evaluate(np.array([i for _, (i, _) in items]), np.stack([p for _, (_, p) in items]))
            except BaseException as exc:  # every waiting worker raises and leaves
                with self._to_workers:
                    self._error = exc
                    self._to_workers.notify_all()
                return
            with self._to_workers:
                self.batches += 1
                for k, (worker, _) in enumerate(items):
                    self._results[worker] = (float(f[k]), g[k])
                self._to_workers.notify_all()


def minimize_all(evaluate: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], p0: np.ndarray,
                 todo: list[int], *, workers: int, max_iter: int, gtol: float, hess_inv0: np.ndarray | None = None,
                 desc: str = "fit sersic") -> dict[int, scipy.optimize.OptimizeResult]:
    """``scipy.optimize.minimize(method="BFGS", jac=True)`` from ``p0[i]`` for every ``i`` in ``todo``.

    ``hess_inv0`` (N, D, D), if given, holds each image's starting inverse
    Hessian (BFGS's ``hess_inv0``; the identity otherwise).

    ``workers`` threads each take images from a queue and run their BFGS;
    the objective calls of all of them are evaluated together by
    ``evaluate(indices, P) -> (f, grad)`` in the calling thread (see
    :class:`Rendezvous`). The first exception, of an evaluation or of a
    worker, is raised once every thread has stopped.
    """
    from galaug.progress import progress

    results: dict[int, scipy.optimize.OptimizeResult] = {}
    jobs: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in todo:
        jobs.put(i)
    rendezvous = Rendezvous(evaluate, workers)
    errors: list[BaseException] = []
    lock = threading.Lock()

    # scipy's line search warns when it gives up (the fit then reports no convergence); filters are
    # process-wide, so they are set here, around the worker threads, not in them
    with warnings.catch_warnings(), progress(total=len(todo), desc=desc) as bar:
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"scipy\.optimize")

        def work(worker: int) -> None:
            try:
                with np.errstate(all="ignore"):
                    while True:
                        try:
                            i = jobs.get_nowait()
                        except queue.Empty:
                            return
                        options = {"maxiter": max_iter, "gtol": gtol}
                        if hess_inv0 is not None:
                            options["hess_inv0"] = hess_inv0[i]
                        res = scipy.optimize.minimize(lambda p, i=i: rendezvous(worker, i, p), p0[i], jac=True,
                                                      method="BFGS", options=options)
                        with lock:
                            results[i] = res
                            bar.update(1)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
            finally:
                rendezvous.leave()

        threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(workers)]
        for t in threads:
            t.start()
        rendezvous.serve()
        for t in threads:
            t.join()
    if rendezvous.error is not None:
        raise rendezvous.error
    if errors:
        raise errors[0]
    return results
