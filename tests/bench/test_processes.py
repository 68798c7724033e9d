"""harness.processes.children: what the learning benchmark charges to the learning worker."""

from __future__ import annotations

import subprocess
import sys
import time

from harness.processes import children

# A parent that starts its child from a thread, as the gateway starts its learning worker.
# The thread lives on (an executor's idle thread does): a child is listed under the thread that started it.
_PARENT = """
import subprocess, sys, threading, time
started = threading.Event()
def start():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started.set()
    time.sleep(30)
threading.Thread(target=start, daemon=True).start()
started.wait()
print("started", flush=True)
time.sleep(30)
"""


def test_children_include_those_started_from_another_thread():
    """Was: only the main thread's children were read (/proc/PID/task/PID/children), so the learning
    worker, started from an executor thread, was not found and its CPU read 0 in `ferryman bench learning`."""
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"started\n"
        deadline = time.monotonic() + 10
        while not (found := children(parent.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(found) == 1 and found[0] != parent.pid
    finally:
        for pid in children(parent.pid):
            subprocess.run(["kill", "-9", str(pid)], check=False)
        parent.kill()
        parent.wait(10)
    assert children(parent.pid) == []
