# The main thread spins in `inner`, which `key` calls, which `sorted` (C code) calls, which
# `outer` calls: `key` runs in a call of the eval loop of its own, entered from C, so the
# kernel must mark it (and `<module>`) as the outermost frame of a call.
# Prints "ready pid=<pid> tid=<tid>", then spins until killed by PID (at most 10 minutes:
# SIGALRM's default action ends it should it outlive its test).
import os, signal, threading


def inner():
    while True:
        pass


def key(item):
    inner()


def outer():
    sorted([1, 2], key=key)


signal.alarm(600)
print("ready pid=%d tid=%d" % (os.getpid(), threading.get_native_id()), flush=True)
outer()
