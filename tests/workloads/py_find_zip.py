# The shape of a pex bug: find_zip walks up from a path that does not exist, looking for
# the zip file it lives in; os.path.dirname("/") is "/", so once at the root it calls
# zipfile.is_zipfile("/") forever. open("/") succeeds, the fstat says directory, the file is
# closed and IsADirectoryError raised, which is_zipfile swallows: a syscall storm of
# openat, newfstatat (fstat on old glibc) and close, one each per iteration, in the main
# thread, under find_zip -> is_zipfile. Prints "ready pid=<pid> tid=<pid>" first.
# It never reads stdin, so it lives until it is killed by PID (the tests do that), at most
# 10 minutes: SIGALRM's default action ends it should it outlive its test.
import os, signal, threading, zipfile

def find_zip(path):
    while path:
        if zipfile.is_zipfile(path):  # LINE find_zip
            return path
        path = os.path.dirname(path)

signal.alarm(600)
print("ready pid=%d tid=%d" % (os.getpid(), threading.get_native_id()), flush=True)
find_zip("/nonexistent-probe-test/app.pex/__main__.py")  # LINE module
