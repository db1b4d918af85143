# The main thread, the process's only thread, spins in busy() and never releases the GIL
# (no other thread ever asks for it). Prints "ready pid=<pid> tid=<pid>" first. It imports
# threading without starting a thread: Python thread names are read from threading._active,
# which a process gets only by importing threading.
# It cannot read stdin while it spins, so it lives until it is killed by PID (the tests do
# that), at most 10 minutes: SIGALRM's default action ends it should it outlive its test.
import os, signal, threading

def busy():
    n = 0
    while True: n += 1  # LINE busy

signal.alarm(600)
print("ready pid=%d tid=%d" % (os.getpid(), threading.get_native_id()), flush=True)
busy()  # LINE module
