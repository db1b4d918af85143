# A thread named "py-spinner" spins in deep -> outer -> middle -> inner. Prints
# "ready pid=<pid> tid=<tid>" once it runs, then lives until stdin reaches EOF.
# Works on every CPython from 3.6 (threading.get_native_id needs 3.8; older ones
# report the pid as the tid, which the tests for them do not use).
import os, sys, threading, time

entered = threading.Event()

def inner():
    entered.set()
    while True: x = 1  # LINE inner

def middle():
    inner()  # LINE middle

def outer():
    middle()  # LINE outer

def deep(n):
    return outer() if n == 0 else deep(n - 1)  # LINE deep

# Arguments: spin below that many extra `deep` frames (default 0); with "late", report
# ready (tid = pid) first and start the spinner 1.5 s later, inside the probe's window.
depth = int(sys.argv[1]) if len(sys.argv) > 1 else 0
late = "late" in sys.argv[2:]
t = threading.Thread(target=deep, args=(depth,), name="py-spinner", daemon=True)
if late:
    print("ready pid=%d tid=%d" % (os.getpid(), os.getpid()), flush=True)
    time.sleep(1.5)
t.start()
entered.wait()
if not late:
    print("ready pid=%d tid=%d" % (os.getpid(), getattr(t, "native_id", os.getpid())), flush=True)
sys.stdin.read()
