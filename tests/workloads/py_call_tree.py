# A thread named "py-tree" splits its time 2:1 between two call chains: main_loop ->
# heavy_a -> leaf_a does twice the work per iteration of main_loop -> light_b -> leaf_b.
# Prints "ready pid=<pid> tid=<tid>" once it runs, then lives until stdin reaches EOF; with
# a number of milliseconds as argument it exits (code 0) after that long instead, stdin
# untouched (a short-lived child for `probe record -- COMMAND`).
import os, sys, threading, time

UNIT = 2000  # loop iterations of one leaf_b call; leaf_a does twice as many
entered = threading.Event()

def leaf_a(n):
    total = 0
    for i in range(n):
        total += i  # LINE leaf_a
    return total

def leaf_b(n):
    total = 0
    for i in range(n):
        total += i  # LINE leaf_b
    return total

def heavy_a():
    return leaf_a(2 * UNIT)

def light_b():
    return leaf_b(UNIT)

def main_loop():
    entered.set()
    while True:
        heavy_a()
        light_b()

t = threading.Thread(target=main_loop, name="py-tree", daemon=True)
t.start()
entered.wait()
print("ready pid=%d tid=%d" % (os.getpid(), t.native_id), flush=True)
if len(sys.argv) > 1:
    time.sleep(int(sys.argv[1]) / 1000)
else:
    sys.stdin.read()
