"""The supervisor's child processes: a fresh interpreter that runs one function, nothing more.

``multiprocessing``'s spawn did two things ``chroma run`` pays for and never uses:

* it starts a *resource tracker* beside the first child, a Python process of ~13 MiB RSS
  living as long as the supervisor, to unlink the named semaphores and shared memory
  blocks of children that die (ours make none: no ``multiprocessing`` lock, queue or
  shared memory in the API or the workers; their own children are plain subprocesses);
* every child runs the parent's main module again to find the target: the ``chroma``
  console script, i.e. typer and the whole command line (~3 MiB in each child).

:class:`ChildProcess` has the part of ``multiprocessing.Process`` the supervisor uses
(``start``, ``pid``, ``is_alive``, ``exitcode``, ``terminate``, ``kill``, ``join``), so
:class:`Spawner` stands in for the spawn context. The child is ``python -c`` reading
the parent's ``sys.path`` and then ``(target, args, name)`` pickled on its stdin (so the
target is a module-level function, as for ``multiprocessing``); it runs with stdin on
``/dev/null``, its ``multiprocessing`` process name set to ``name`` (the logs'
``processName``), and :data:`chroma.lifetime.PARENT_PID_ENV` telling it its parent.
Exit codes as ``multiprocessing``'s: 0, 1 after an uncaught exception (its traceback on
stderr), ``SystemExit``'s code, ``-N`` when signal N killed it.

Imports nothing of chroma but ``lifetime``: the supervisor stays small.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import traceback
from collections.abc import Callable
from typing import Any

from chroma.lifetime import PARENT_PID_ENV

__all__ = ["ChildProcess", "Spawner", "child_main"]

_CHILD = "from chroma.control.spawning import child_main; child_main()"


class ChildProcess:
    """``target(*args)`` in a new interpreter, with ``multiprocessing.Process``'s interface."""

    def __init__(self, target: Callable[..., object], args: tuple[Any, ...] = (),
                 name: str | None = None) -> None:
        self.target = target
        self.args = args
        self.name = name or getattr(target, "__name__", "child")
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the child; the target and its arguments must pickle (checked first)."""
        if self._popen is not None:
            raise RuntimeError(f"{self.name} was started already")
        payload = pickle.dumps(list(sys.path)) + pickle.dumps(
            (self.target, self.args, self.name))
        env = {**os.environ, PARENT_PID_ENV: str(os.getpid())}
        # "chroma <name>" after the code: what ps shows of it (the arguments are not read)
        self._popen = subprocess.Popen([sys.executable, "-c", _CHILD, "chroma", self.name],
                                       stdin=subprocess.PIPE, env=env)
        assert self._popen.stdin is not None
        try:
            self._popen.stdin.write(payload)
            self._popen.stdin.close()
        except BrokenPipeError:  # it died at once: its exit code says so
            pass

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    @property
    def exitcode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def is_alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def join(self, timeout: float | None = None) -> None:
        if self._popen is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout)

    def terminate(self) -> None:
        if self.is_alive():
            assert self._popen is not None
            self._popen.terminate()

    def kill(self) -> None:
        if self.is_alive():
            assert self._popen is not None
            self._popen.kill()


class Spawner:
    """What the supervisor asks of a ``multiprocessing`` context: a ``Process`` factory."""

    Process = ChildProcess


def child_main() -> None:
    """In the child: read the parent's path and the call from stdin, run it, exit."""
    stdin = sys.stdin.buffer
    sys.path[:] = pickle.load(stdin)
    target, args, name = pickle.load(stdin)  # imports the target's module
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    import multiprocessing  # the logs' processName is this name, as under multiprocessing

    multiprocessing.current_process().name = name
    code = 0
    try:
        target(*args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # as multiprocessing: the traceback, then exit code 1
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)
