# A thread named "py-zlib" in compress_loop, which compresses 256 KiB of pseudo-random but
# compressible bytes (words of a small vocabulary, fixed seed) with zlib.compress(data, 9)
# over and over: nearly all of its time is in libz, below the zlib module's compress
# function, below compress_loop. Prints "ready pid=<pid> tid=<tid>" once it runs, then
# lives until stdin reaches EOF.
import os, random, sys, threading, zlib

SIZE = 256 * 1024
entered = threading.Event()

def make_data():
    rng = random.Random(1234)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(500)]
    out = bytearray()
    while len(out) < SIZE:
        out += rng.choice(words) + b" "
    return bytes(out[:SIZE])

def compress_loop(data):
    entered.set()
    while True:
        zlib.compress(data, 9)  # LINE compress_loop

t = threading.Thread(target=compress_loop, args=(make_data(),), name="py-zlib", daemon=True)
t.start()
entered.wait()
print("ready pid=%d tid=%d" % (os.getpid(), t.native_id), flush=True)
sys.stdin.read()
