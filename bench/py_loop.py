"""A pure-Python CPU loop: xorshift64 steps, each a Python function call, a few frames below
the module so that a sampler walking Python frames has real work to do.

Protocol (the C workloads' one, see workload.h): `py_loop.py <seconds>` runs its loop for that
much wall time, then prints exactly one line "iterations=<n> secs=<elapsed> cpu_secs=<on-CPU>"
and exits 0. It measures its own times, so the interpreter's start-up stays out of the rate.

With `--start-on-eof` after the seconds it first writes "ready" on stderr, then waits for end
of file on stdin before it starts: the bench starts it that way so that an observer which
needs its PID (py-spy) can attach before the measured run.
"""

import sys
import time

# One chunk is ~1.5 ms of work (CPython 3.12 here, ~1.3 M steps a second), so the clock is
# read several hundred times a second, as in the C workloads.
STEPS_PER_CHUNK = 2_000
MASK = (1 << 64) - 1


def step(x):
    """One xorshift64 step; a call of its own, so every sample has this frame on top."""
    x ^= (x << 13) & MASK
    x ^= x >> 7
    x ^= (x << 17) & MASK
    return x


def inner(x):
    for _ in range(STEPS_PER_CHUNK):
        x = step(x)
    return x


def middle(x):
    return inner(x)


def outer(x):
    return middle(x)


def run_for(secs):
    """Runs chunks until `secs` have passed; returns (iterations, elapsed, on-CPU seconds)."""
    cpu_start = time.process_time()
    start = time.monotonic()
    iterations = 0
    x = 1
    while True:
        x = outer(x | 1)
        iterations += STEPS_PER_CHUNK
        elapsed = time.monotonic() - start
        if elapsed >= secs:
            break
    return iterations, elapsed, time.process_time() - cpu_start


def parse_args(argv):
    """The run length in seconds and whether to wait for stdin's end; exits 2 when wrong."""
    args = argv[1:]
    gated = args[1:] == ["--start-on-eof"]
    try:
        secs = float(args[0]) if len(args) == 1 or gated else 0.0
    except ValueError:
        secs = 0.0
    if not secs > 0.0:
        print(f"usage: {argv[0]} <seconds> [--start-on-eof]", file=sys.stderr)
        sys.exit(2)
    return secs, gated


def main():
    secs, gated = parse_args(sys.argv)
    if gated:
        print("ready", file=sys.stderr, flush=True)
        sys.stdin.buffer.read()
    iterations, elapsed, cpu = run_for(secs)
    print(f"iterations={iterations} secs={elapsed:.6f} cpu_secs={cpu:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
