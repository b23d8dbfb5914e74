"""How many threads the local model runs on, and how it runs on them.

onnxruntime, left to itself, starts one thread per physical core and keeps them spinning
between operators. On a machine that other processes also use, a spinning thread burns
the time slice a busy neighbour needs, and every operator waits for its slowest thread:
the issue behind this module measured 0.54x of the quiet throughput with one competing
process and 0.38x with two. Inside ``GridSearchCV(n_jobs=k)`` each joblib worker is such a
neighbour of the others. So:

- a session runs every operator on the thread that called it (one intra-op thread, no
  pool, nothing to spin), and the model uses its cores by running that many *batches* at
  once (:func:`map_in_threads`): the runs share no barrier, so a thread that a neighbour
  slows down delays only its own batch, and on an idle machine nothing waits either
  (1.25x the throughput of one session on two intra-op threads, measured);
- without an explicit ``n_threads``, the count is three batches per CPU this process may
  use (its affinity mask, bounded by a cgroup CPU quota; :data:`RUNS_PER_CPU` says why
  three), or, when one is set, the limit that joblib's
  workers, ``joblib.parallel_config(inner_max_num_threads=...)`` or the user set in the
  threadpoolctl-style variables (``OMP_NUM_THREADS``, then ``MKL_NUM_THREADS``,
  ``OPENBLAS_NUM_THREADS``): loky sets these to ``cpu_count // n_jobs`` in each worker,
  which is what keeps k workers from starting k times as many threads as there are cores.

``docs/local_model.rst`` ("Busy machines and n_jobs") has the measured figures.
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from numbers import Integral

from ._signals import CHECK_SECONDS, DeferredInterrupts

__all__ = ["RUNS_PER_CPU", "inference_threads", "map_in_threads", "onnx_session_options"]

#: Batches the local model runs side by side per available CPU when no limit variable is
#: set. With more runnable threads than cores, the scheduler shares the cores per thread:
#: beside k CPU-bound processes, T threads get T / (T + k) of them, so one batch per core
#: (T = 2 on 2 cores) is capped at 0.67x of its quiet throughput beside one process and
#: 0.5x beside two. Measured on 2 cores (clothing reviews, medians of 2 fresh
#: processes, bench_local.py --contended): one per core 0.67x and 0.45x; two per core
#: 0.76-0.80x and 0.59-0.69x, at the edge of its 4/5 ceiling beside one process; three
#: per core 0.85-0.88x and 0.74-0.78x, and on an idle machine 0.99x to 0.95x of two per
#: core's speed (two runs on two machines). The price is paid by the neighbours, whose
#: share shrinks as much: n_threads=cpu_count is the polite setting.
RUNS_PER_CPU = 3

#: Read in this order; the first one set to a valid count is the limit. joblib's loky
#: workers set all of them (to ``inner_max_num_threads`` or ``cpu_count // n_jobs``).
THREAD_LIMIT_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_CGROUP_V2_CPU_MAX = "/sys/fs/cgroup/cpu.max"
_CGROUP_V1_QUOTA = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"
_CGROUP_V1_PERIOD = "/sys/fs/cgroup/cpu/cpu.cfs_period_us"


def inference_threads(n_threads=None, environ=None, per_cpu=1):
    """The number of threads the local model runs on.

    Parameters
    ----------
    n_threads : int or None, default=None
        An explicit count, returned as it is. ``None`` chooses: the CPUs available to
        this process, at most the first valid limit among ``OMP_NUM_THREADS``,
        ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS``.
    environ : mapping, default=None
        The environment to read the limits from; ``os.environ`` if ``None``.
    per_cpu : int, default=1
        Threads per available CPU when no limit variable is set (a limit set is used
        as it is: it shares the cores among joblib's workers). Two for batches run
        side by side (:func:`map_in_threads`): see :data:`RUNS_PER_CPU`.

    Returns
    -------
    int
        At least 1.

    Warns
    -----
    RuntimeWarning
        When a limit variable holds something other than a positive integer: it is
        ignored, and the message names the variable, its value and what is used instead.

    Examples
    --------
    >>> from skembed.backends._threads import inference_threads
    >>> inference_threads(3)
    3
    >>> inference_threads(environ={"OMP_NUM_THREADS": "1"})
    1
    >>> inference_threads(environ={"OMP_NUM_THREADS": "1"}, per_cpu=RUNS_PER_CPU)
    1
    """
    if n_threads is not None:
        if isinstance(n_threads, bool) or not isinstance(n_threads, Integral) or n_threads < 1:
            raise ValueError(f"n_threads must be an int >= 1 or None; got {n_threads!r}.")
        return int(n_threads)
    available = available_cpus()
    limit = _env_limit(os.environ if environ is None else environ, available)
    if limit is not None:
        return max(1, min(available, limit))
    return per_cpu * available


def available_cpus():
    """CPUs this process may run on: its affinity mask, bounded by a cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, quota)
    return max(1, count)


def _cgroup_quota():
    """Whole CPUs a cgroup CPU quota allows (rounded up), or ``None`` without one."""
    try:
        with open(_CGROUP_V2_CPU_MAX) as handle:
            quota, period = handle.read().split()[:2]
    except (OSError, ValueError):
        try:
            with open(_CGROUP_V1_QUOTA) as q, open(_CGROUP_V1_PERIOD) as p:
                quota, period = q.read().strip(), p.read().strip()
        except (OSError, ValueError):
            return None
    try:
        quota, period = int(quota), int(period)
    except ValueError:  # "max": no quota
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, -(-quota // period))


def _env_limit(environ, available):
    for name in THREAD_LIMIT_VARIABLES:
        raw = environ.get(name)
        if raw is None or not raw.strip():
            continue
        # OMP_NUM_THREADS may list one count per nesting level ("4,2"): the first is ours.
        first = raw.split(",")[0].strip()
        try:
            value = int(first)
        except ValueError:
            value = 0
        if value >= 1:
            return value
        warnings.warn(
            f"{name}={raw!r} is not a positive integer; the local model ignores it and "
            f"reads the next limit, or uses the {available} CPU(s) available.",
            RuntimeWarning,
            stacklevel=3,
        )
    return None


def onnx_session_options(ort, n_threads):
    """onnxruntime ``SessionOptions`` for ``n_threads`` intra-op threads that do not spin.

    Parameters
    ----------
    ort : module
        The imported ``onnxruntime``.
    n_threads : int
        Intra-op threads (see :func:`inference_threads`).

    Returns
    -------
    onnxruntime.SessionOptions
        Sequential execution (one inter-op thread), ``n_threads`` intra-op threads,
        spinning off for both pools. The local model asks for one intra-op thread and
        runs batches side by side instead (:func:`map_in_threads`).

    Examples
    --------
    >>> import onnxruntime as ort
    >>> from skembed.backends._threads import onnx_session_options
    >>> options = onnx_session_options(ort, 2)
    >>> options.intra_op_num_threads, options.get_session_config_entry(
    ...     "session.intra_op.allow_spinning")
    (2, '0')
    """
    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(n_threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def map_in_threads(function, items, n_threads):
    """Yield ``function(item)`` for each item, in order, running up to ``n_threads`` at once.

    For work that releases the GIL (an onnxruntime run, a large matrix product). At most
    ``n_threads + 1`` items are started ahead of the one being waited for, so memory stays
    bounded, and a thread that finishes early picks up the next item at once. When the
    consumer stops early, or an item raises (the error reaches the consumer in order),
    or Ctrl-C interrupts the wait, the items not yet started are cancelled and the
    running ones are waited for: no thread of this call outlives it (so a later fork
    copies none).

    Parameters
    ----------
    function : callable
        Called with one item; called in the caller's thread when ``n_threads`` is 1.
    items : iterable
    n_threads : int
        Threads to run on, at least 1.

    Yields
    ------
    object
        ``function(item)``, in the order of ``items``.

    Examples
    --------
    >>> from skembed.backends._threads import map_in_threads
    >>> list(map_in_threads(lambda x: x * x, range(5), 2))
    [0, 1, 4, 9, 16]
    """
    items = iter(items)
    if n_threads <= 1:
        for item in items:
            yield function(item)
        return
    executor = ThreadPoolExecutor(n_threads, thread_name_prefix="skembed-run")
    pending = deque()
    # Ctrl-C only where this waits (see _signals): one landing inside a future's lock
    # would leave it held, and the worker setting that future's result, then the
    # shutdown below, would wait forever.
    with DeferredInterrupts() as interrupts:
        try:
            for item in items:
                pending.append(executor.submit(function, item))
                if len(pending) > n_threads:
                    yield _result(pending.popleft(), interrupts)
            while pending:
                yield _result(pending.popleft(), interrupts)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)


def _result(future, interrupts):
    """``future.result()``, delivering a Ctrl-C that arrives meanwhile."""
    while True:
        try:
            return future.result(timeout=CHECK_SECONDS)
        except FutureTimeoutError:
            if future.done():  # the function's own TimeoutError
                return future.result()
            interrupts.check()
