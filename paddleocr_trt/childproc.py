"""Child processes that cannot outlive their parent.

Conversion and engine-build children run in their own session (so a timeout can kill their whole
process group), which also means nothing ties them to the parent: a parent killed with SIGKILL
(or SIGTERM without a handler) would leave them running, holding memory, a GPU and a cache temp
dir. Two independent ties, so that either one suffices:

* :func:`die_with_parent`: Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``. Caveat: the kernel sends
  the signal when the *thread* that forked the child exits, not the process. A child started from
  a worker thread that then ends (e.g. a ``ThreadPoolExecutor`` thread shut down while the child
  runs) is killed early. The callers here wait for the child on the thread that started it, so
  that thread outlives the child; code that hands a child to another thread must not rely on it.
* :func:`watch_parent_pipe`: the child reads an inherited pipe whose write end only the parent
  holds; end-of-file means the parent is gone (any OS, any thread).

Both are for the *child* to call first thing, before any heavy import.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

#: environment variables a parent sets for :func:`install_from_env` in the child
ENV_PARENT_PID = "PADDLEOCR_TRT_PARENT_PID"
ENV_PARENT_PIPE_FD = "PADDLEOCR_TRT_PARENT_PIPE_FD"
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies; exit now if it already has.

    Linux only (a no-op elsewhere; use :func:`watch_parent_pipe` too). Call it first thing in the
    child: the ``getppid`` check closes the window between fork and the ``prctl`` call, in which
    the parent may already have died (the child is then re-parented and ``getppid`` changes).
    See the module docstring for the thread caveat.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def watch_parent_pipe(read_fd: int) -> threading.Thread:
    """Exit (``os._exit``) as soon as the parent's end of the pipe ``read_fd`` is closed."""

    def watch() -> None:
        try:
            while os.read(read_fd, 1):
                pass
        except OSError:
            pass
        os._exit(1)

    thread = threading.Thread(target=watch, name="paddleocr_trt-parent-watch", daemon=True)
    thread.start()
    return thread


def install_from_env(environ: dict[str, str] | None = None) -> None:
    """In a child started with :func:`parent_ties`: apply both ties it set up."""
    env = os.environ if environ is None else environ
    pid = env.get(ENV_PARENT_PID)
    if pid and pid.isdigit():
        die_with_parent(int(pid))
    fd = env.get(ENV_PARENT_PIPE_FD)
    if fd and fd.isdigit():
        watch_parent_pipe(int(fd))


class parent_ties:
    """Parent side: a pipe for the child to watch, and the environment/fds to start it with.

    ``with parent_ties() as ties: subprocess.Popen(..., env={**env, **ties.env},
    pass_fds=ties.pass_fds)``; the write end stays open (only in this process: it is not
    inheritable) until the block ends, after the child has been waited for.
    """

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        self.env = {ENV_PARENT_PID: str(os.getpid()), ENV_PARENT_PIPE_FD: str(self._read_fd)}
        self.pass_fds = (self._read_fd,)

    def __enter__(self) -> parent_ties:
        return self

    def close_child_end(self) -> None:
        """Call once the child has started: the parent must not keep the read end."""
        if self._read_fd >= 0:
            os.close(self._read_fd)
            self._read_fd = -1

    def __exit__(self, *exc: object) -> None:
        self.close_child_end()
        if self._write_fd >= 0:
            os.close(self._write_fd)
            self._write_fd = -1
