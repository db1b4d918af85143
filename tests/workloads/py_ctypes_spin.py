# A thread named "py-ctypes" in call_native, which calls the C function native_spin(1.0)
# of the shared library argv[1] (workloads/ctypes_spin_lib.c, built without frame
# pointers) through ctypes, over and over: native_spin spins in native_inner for a second
# and returns. ctypes releases the GIL for the call, so the main thread stays free to read
# stdin. Prints "ready pid=<pid> tid=<tid>" once the thread is about to make its first
# call, then lives until stdin reaches EOF.
import ctypes, os, sys, threading

lib = ctypes.CDLL(sys.argv[1])
lib.native_spin.argtypes = [ctypes.c_double]
lib.native_spin.restype = ctypes.c_long
entered = threading.Event()

def call_native():
    entered.set()
    while True:
        lib.native_spin(1.0)  # LINE call_native

t = threading.Thread(target=call_native, name="py-ctypes", daemon=True)
t.start()
entered.wait()
print("ready pid=%d tid=%d" % (os.getpid(), t.native_id), flush=True)
sys.stdin.read()
