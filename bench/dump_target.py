# `cargo xtask bench`'s target for the dump comparison: N idle threads (argv[1]) waiting on
# an Event, and one thread, "loop", doing pure-Python work in chunks of ~50 us, noting the
# CLOCK_MONOTONIC time each chunk ends. Prints "ready" once every thread runs; on stdin EOF
# prints the loop's chunk end times (ns), one per line, and exits. A dumper that pauses the
# process shows as a gap in those times; one that slows it, as fewer chunks per second.
import sys, threading, time

count = int(sys.argv[1])
release = threading.Event()
for i in range(count):
    threading.Thread(target=release.wait, name="idle-%d" % i, daemon=True).start()

stamps = []
running = True


def loop():
    x = 0
    while running:
        for _ in range(1000):
            x += 1
        stamps.append(time.monotonic_ns())


worker = threading.Thread(target=loop, name="loop", daemon=True)
worker.start()
print("ready", flush=True)
sys.stdin.read()
running = False
worker.join()
sys.stdout.write("".join("%d\n" % t for t in stamps))
sys.stdout.flush()
