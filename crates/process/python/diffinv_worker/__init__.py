"""The worker side of diffinv's process protocol (version 1), for simulators written in Python.

    import numpy as np
    from diffinv_worker import serve

    def forward(x):                  # x: (n, 2) float32
        return np.stack([x[:, 0] * x[:, 1], x[:, 0] + x[:, 1]], axis=1)

    if __name__ == "__main__":
        serve(forward, in_dim=2, out_dim=2)

and in the run's config file:

    [forward]
    kind = "process"
    command = ["python3", "simulator.py"]
    in_dim = 2
    out_dim = 2

``serve`` writes the hello line, then answers every call diffinv sends until stdin closes.
Failure semantics:

- a row that ``forward`` returns with a NaN (or an infinity) fails alone; the others are kept;
- an exception fails every row of the call with an error reply whose message is the
  exception's type and last line (``ValueError: mesh too coarse``); the worker keeps serving;
- a result of the wrong shape is reported the same way (``ValueError``).

stdout belongs to the protocol: while ``serve`` runs, ``sys.stdout`` is ``sys.stderr`` and file
descriptor 1 points to stderr too (the protocol writes to a private copy), so ``print``, C
extensions and child processes that write to stdout end up in diffinv's worker log instead of
corrupting the protocol. Only numpy is needed.
See docs/simulators.md for the protocol itself.
"""

import json
import os
import sys
import traceback

import numpy as np

__all__ = ["serve", "worker_id", "PROTOCOL_VERSION", "MAX_HEADER"]

#: The protocol version this module speaks.
PROTOCOL_VERSION = 1
#: The longest header line, newline included.
MAX_HEADER = 64 * 1024

_F32 = np.dtype("<f4")


def _read_exact(stream, n):
    chunks = []
    while n > 0:
        b = stream.read(n)
        if not b:
            raise EOFError("input cut short")
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def _error_message(exc):
    lines = traceback.format_exception_only(type(exc), exc)
    last = lines[-1].strip() if lines else type(exc).__name__
    return last or type(exc).__name__


def serve(forward, in_dim, out_dim):
    """Serve diffinv's protocol on stdin/stdout until stdin closes.

    ``forward`` maps an ``(n, in_dim)`` float32 array to an ``(n, out_dim)`` array (any real
    dtype; it is sent as float32). Rows with NaN mean failure of those rows; an exception means
    failure of every row of the call, reported to diffinv with its message.
    """
    in_dim, out_dim = int(in_dim), int(out_dim)
    if in_dim <= 0 or out_dim <= 0:
        raise ValueError("in_dim and out_dim must be positive")
    stdin = sys.stdin.buffer
    sys.stdout.flush()
    # The protocol gets a private copy of file descriptor 1; descriptor 1 itself then points to
    # stderr, so that print, C extensions and child processes writing to "stdout" cannot
    # corrupt the protocol: their output goes to diffinv's worker log.
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    stdout = os.fdopen(proto_fd, "wb", buffering=1 << 16)
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        hello = {"protocol": PROTOCOL_VERSION, "in_dim": in_dim, "out_dim": out_dim}
        stdout.write((json.dumps(hello) + "\n").encode())
        stdout.flush()
        while True:
            line = stdin.readline(MAX_HEADER)
            if not line:
                return
            if not line.endswith(b"\n"):
                raise RuntimeError("diffinv_worker: request header longer than 64 KiB")
            req = json.loads(line)
            rows, d = int(req["rows"]), int(req["in_dim"])
            if d != in_dim:
                raise RuntimeError(
                    "diffinv_worker: request with in_dim %d, this worker takes %d" % (d, in_dim)
                )
            raw = _read_exact(stdin, rows * in_dim * 4)
            x = np.frombuffer(raw, dtype=_F32).reshape(rows, in_dim).astype(np.float32)
            try:
                y = np.asarray(forward(x))
                if y.shape != (rows, out_dim):
                    raise ValueError(
                        "forward returned shape %s, expected (%d, %d)" % (y.shape, rows, out_dim)
                    )
                payload = np.ascontiguousarray(y, dtype=_F32).tobytes()
            except Exception as exc:  # noqa: BLE001 - every failure becomes an error reply
                reply = {"status": "error", "message": _error_message(exc)}
                stdout.write((json.dumps(reply) + "\n").encode())
            else:
                header = {"status": "ok", "rows": rows, "out_dim": out_dim}
                stdout.write((json.dumps(header) + "\n").encode() + payload)
            stdout.flush()
    finally:
        sys.stdout = saved
        try:
            stdout.flush()
            os.dup2(proto_fd, 1)
            stdout.close()
        except OSError:
            pass


def worker_id():
    """This worker's index in the pool (``DIFFINV_WORKER_ID``), or None outside diffinv."""
    v = os.environ.get("DIFFINV_WORKER_ID")
    return int(v) if v is not None else None
