"""The launcher: ``python -m tinynet.distributed.run -n 2 script.py [script options]``.

It runs ``mpiexec -n 2`` on a small per-rank supervisor (this file again, run by path so that it
imports nothing but the standard library), which starts ``python script.py ...`` as its child
and reports how the child ended. What ends the job, and how fast:

- a rank raises: tinynet.distributed's excepthook prints the traceback and "rank R of N failed
  (...)", then calls MPI_Abort; mpiexec ends every rank at once (well under a second);
- a rank dies (killed, out of memory, ``os._exit``): its supervisor prints "rank R ... was
  killed by signal S" (or "exited with code C") and exits with an error; mpiexec then ends the
  other ranks at once;
- a rank hangs or leaves early without error: the others' next collective fails after the
  process group's timeout (``init_process_group(timeout=...)``, default 600 s, or
  ``$TINYNET_DISTRIBUTED_TIMEOUT``), which is the first case;
- ``--timeout S`` ends the whole job after S seconds of wall time, whatever it is doing (CI).

The exit status is the job's: 0 when every rank succeeded, 124 after ``--timeout``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys

_THIS_FILE = os.path.abspath(__file__)


def _find_mpiexec(given: str | None) -> str:
    """``--mpiexec``, else mpiexec beside this Python (the mpich wheel's), else on PATH."""
    if given:
        return given
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.path.exists(beside) else shutil.which("mpiexec")
    if found is None:
        sys.exit("tinynet.distributed.run: mpiexec not found; install the MPI extra: "
                 "pip install -e \".[distributed]\" (the mpich and mpi4py wheels), or pass --mpiexec PATH")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinynet.distributed.run",
        description="Run SCRIPT in N processes with mpiexec, one rank each (data-parallel training).")
    parser.add_argument("-n", "--nproc-per-node", "--nproc_per_node", dest="n", type=int, default=1,
                        help="number of processes (ranks)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="end the whole job after this many seconds (default: no limit)")
    parser.add_argument("--mpiexec", default=None, help="the mpiexec to use (default: the mpich wheel's)")
    parser.add_argument("script", help="the Python script every rank runs")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's own options")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"-n must be at least 1, got {args.n}")
    command = [_find_mpiexec(args.mpiexec), "-n", str(args.n), sys.executable, _THIS_FILE, "--rank-process",
               args.script, *args.args]
    # Its own session, so that a timeout can end mpiexec and everything it started at once.
    job = subprocess.Popen(command, start_new_session=True)

    def stop(sig, _frame):  # the launcher is being ended: end the job with it
        _end(job)
        sys.exit(128 + sig)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        return job.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"tinynet.distributed.run: the job ran past --timeout {args.timeout:g} s; ending all "
              f"{args.n} ranks", file=sys.stderr, flush=True)
        _end(job)
        return 124
    except KeyboardInterrupt:
        _end(job)
        return 130


def _end(job) -> None:
    """SIGTERM to the job's process group, SIGKILL if it is still there after 5 s."""
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(job.pid, sig)
        except ProcessLookupError:
            return
        try:
            job.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _rank_process(argv) -> int:
    """One rank under mpiexec: run ``python script ...`` and say how it ended if it failed."""
    rank, size = os.environ.get("PMI_RANK", "?"), os.environ.get("PMI_SIZE", "?")

    def die_with_parent():  # the child must not outlive its supervisor, whatever kills it
        try:
            import ctypes
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    # close_fds=False: the child inherits mpiexec's PMI socket ($PMI_FD) and joins the job through it.
    child = subprocess.Popen([sys.executable, *argv], close_fds=False, preexec_fn=die_with_parent)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _frame: child.send_signal(s))
    code = child.wait()
    if code < 0:
        name = signal.Signals(-code).name
        print(f"tinynet.distributed.run: rank {rank} of {size} (pid {child.pid}) was killed by signal {name}; "
              "ending the job", file=sys.stderr, flush=True)
        return 128 - code
    if code > 0:
        print(f"tinynet.distributed.run: rank {rank} of {size} (pid {child.pid}) exited with code {code}; "
              "ending the job", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--rank-process":
        sys.exit(_rank_process(sys.argv[2:]))
    sys.exit(main())
