# Two threads, "left" and "right", deadlocked on two threading.Locks: left holds A and
# waits for B, right holds B and waits for A. Prints "ready pid=<pid> tid=<left's tid>"
# once both hold their first lock (the second acquire follows at once), then lives until
# stdin reaches EOF. With the argument "rlock", the locks are threading.RLocks (which
# record their owner). Needs CPython 3.8+ (threading.get_native_id).
import os, sys, threading

make_lock = threading.RLock if sys.argv[1:] == ["rlock"] else threading.Lock
a = make_lock()
b = make_lock()
both_hold = threading.Barrier(3)
tids = {}

def take_both(first, second):
    tids[threading.current_thread().name] = threading.get_native_id()
    with first:
        both_hold.wait()
        with second:  # LINE take_second
            pass

left = threading.Thread(target=take_both, args=(a, b), name="left", daemon=True)
right = threading.Thread(target=take_both, args=(b, a), name="right", daemon=True)
left.start()
right.start()
both_hold.wait()
print("ready pid=%d tid=%d" % (os.getpid(), tids["left"]), flush=True)
sys.stdin.read()
