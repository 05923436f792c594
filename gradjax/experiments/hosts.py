"""Multi-host sweeps that never hang: every host publishes its state, and every wait watches for failures.

Hosts of one ``jax.distributed`` run split the cells of a sweep. Without a protocol, a host that
raises (a full disk, a foreign file in the way, Ctrl-C) leaves the others waiting forever at the final
barrier. Here every host writes its state into the coordination service's key-value store under
``gradjax/sweep/<experiment>/<size>/``:

* ``cell/<i>``: the cell host i is computing (updated before each cell);
* ``state/<i>``: ``{"state": "failed", "cell": ..., "error": ...}`` when host i raised (published
  just before the exception leaves the sweep), or ``{"state": "done", ...}`` when it finished.

Every host reads the states before each of its cells and at the end waits until every host is done,
polling. A failed host makes every other host raise :class:`HostFailedError` naming the failed host,
its cell and its error — at its next cell boundary, or at the end — so finished cells stay on disk and
rerunning the same command resumes. A host that dies without raising (killed, segfault) is caught by
``jax.distributed`` itself: it aborts every process once that host misses its heartbeats
(``heartbeat_timeout_seconds`` of ``jax.distributed.initialize``, 100 s by default). A host that is
alive but stuck is caught by the optional ``timeout_s`` of the final wait, which names the hosts not
done and their cells.

Per-cell errors are not host failures: a cell whose ``theory``/``measure`` raised is recorded as
``<cell id>.failed.json`` and its host goes on (see :mod:`gradjax.experiments.sweep`).
"""

from __future__ import annotations

import json
import time
from typing import Protocol

#: Seconds between two reads of the other hosts' states while waiting at the end of a sweep.
POLL_S = 0.2


class HostFailedError(RuntimeError):
    """Another host of a multi-host sweep failed; this host stopped too."""


class KeyValueStore(Protocol):
    """What the protocol needs from a store shared by all hosts of one run."""

    def key_value_set(self, key: str, value: str, allow_overwrite: bool = False) -> None: ...

    def key_value_dir_get(self, prefix: str) -> list[tuple[str, str]]: ...


def distributed_store() -> KeyValueStore | None:
    """The key-value store of ``jax.distributed``'s coordination service, or None when not initialized.

    jax (0.10, 0.11) exposes the client only as ``jax._src.distributed.global_state.client``; the
    attribute is read defensively so that a jax without it gives a single-host sweep, not a crash.
    """
    try:
        from jax._src import distributed
    except ImportError:
        return None
    return getattr(getattr(distributed, "global_state", None), "client", None)


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


class HostSync:
    """One host's side of the protocol (module docstring) for one sweep.

    Args:
      store: the shared key-value store, or None (a single host: every method is a no-op).
      run: the sweep's name in the store, e.g. ``"phase-diagram/quick"``.
      process_index, process_count: this host and the number of hosts.
      timeout_s: longest wait at the end for the other hosts to finish (None: no limit).
      poll_s: seconds between two reads while waiting.
    """

    def __init__(self, store: KeyValueStore | None, run: str, process_index: int, process_count: int, *,
                 timeout_s: float | None = None, poll_s: float = POLL_S):
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s must be a positive number of seconds or None, got {timeout_s!r}")
        self.store = store if process_count > 1 else None
        self.prefix = f"gradjax/sweep/{run}/"
        self.index, self.count = int(process_index), int(process_count)
        self.timeout_s, self.poll_s = timeout_s, poll_s
        self.cell: str | None = None

    def _set(self, kind: str, value) -> None:
        self.store.key_value_set(f"{self.prefix}{kind}/{self.index}", json.dumps(value), allow_overwrite=True)

    def _read(self, kind: str) -> dict[int, object]:
        out = {}
        for key, value in self.store.key_value_dir_get(f"{self.prefix}{kind}/"):
            out[int(key.rstrip("/").rsplit("/", 1)[-1])] = json.loads(value)
        return out

    def _raise_if_peer_failed(self, states: dict) -> None:
        failed = sorted(i for i, s in states.items() if s.get("state") == "failed" and i != self.index)
        if failed:
            i = failed[0]
            s = states[i]
            where = f"at cell {s['cell']!r}" if s.get("cell") is not None else "before its first cell"
            also = f" (also failed: hosts {failed[1:]})" if failed[1:] else ""
            raise HostFailedError(
                f"host {i} of {self.count} failed {where}: {s['error']}{also}; host {self.index} stopped "
                f"(cells finished so far are on disk; rerun the same command to resume)"
            )

    def start_cell(self, cell_id: str) -> None:
        """Before computing ``cell_id``: raises :class:`HostFailedError` if another host failed."""
        self.cell = cell_id
        if self.store is None:
            return
        self._raise_if_peer_failed(self._read("state"))
        self._set("cell", cell_id)

    def fail(self, exc: BaseException) -> None:
        """Publishes that this host raised ``exc`` (at its current cell); the caller re-raises."""
        if self.store is None or isinstance(exc, HostFailedError):
            return  # a host stopped by another's failure adds nothing: the others see the original
        self._set("state", {"state": "failed", "cell": self.cell, "error": _one_line(exc)})

    def finish(self, failed_cells=()) -> None:
        """Publishes that this host is done, then waits until every host is done.

        Raises:
          HostFailedError: another host failed, or (with ``timeout_s``) was not done in time.
        """
        self.cell = None
        if self.store is None:
            return
        self._set("state", {"state": "done", "failed_cells": sorted(failed_cells)})
        t0 = time.monotonic()
        while True:
            states = self._read("state")
            self._raise_if_peer_failed(states)
            if len(states) >= self.count:
                return
            if self.timeout_s is not None and time.monotonic() - t0 > self.timeout_s:
                cells = self._read("cell")
                missing = [i for i in range(self.count) if i not in states]
                doing = ", ".join(f"host {i} at cell {cells.get(i)!r}" for i in missing)
                raise HostFailedError(
                    f"host(s) {missing} of {self.count} not done after {self.timeout_s} s ({doing}); host "
                    f"{self.index} stopped (cells finished so far are on disk; rerun the same command to resume)"
                )
            time.sleep(self.poll_s)
