# A thread that lives only inside the probe's window. Arguments: TID_FILE DELAY SPIN.
# Prints "ready pid=<pid> tid=<pid>", sleeps DELAY seconds, then starts a thread named
# "py-short" that spins in burst() for SPIN seconds (time.monotonic is a vDSO call, so no
# syscalls) and ends; the main thread joins it, writes its native id to TID_FILE (through a
# rename, so the file is whole once it exists) and lives until stdin reaches EOF.
import os, sys, threading, time

def burst(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end: pass  # LINE burst

tid_file, delay, spin = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
print("ready pid=%d tid=%d" % (os.getpid(), threading.get_native_id()), flush=True)
time.sleep(delay)
t = threading.Thread(target=burst, args=(spin,), name="py-short")
t.start()
t.join()
with open(tid_file + ".tmp", "w") as f:
    f.write("%d\n" % t.native_id)
os.rename(tid_file + ".tmp", tid_file)
sys.stdin.read()
