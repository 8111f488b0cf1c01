"""A browser test's Chromium ends with the test process, however that process ends."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, TESTS, gone_within

# Starts the tests' browser, says its chromedriver's pid and the browser's, then waits to be killed.
_START = """
import sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from conftest import chromium_driver
driver = chromium_driver()
server = driver.service.process.pid
print(server, flush=True)
time.sleep(600)
"""


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def test_a_killed_test_process_leaves_no_chromedriver_or_chromium_running() -> None:
    test_process = subprocess.Popen(
        [sys.executable, "-c", _START, str(TESTS), str(ROOT)], stdout=subprocess.PIPE, text=True
    )
    try:
        server = int(test_process.stdout.readline())
        browsers = _children(server)
        assert browsers, "chromedriver started no browser"
        test_process.send_signal(signal.SIGKILL)  # no clean-up of its own: only the kernel's signal can help
        test_process.wait(timeout=10)
        assert gone_within(server, 10), "chromedriver outlived the test process that started it"
        for browser in browsers:
            assert gone_within(browser, 10), "Chromium outlived the test process that started it"
    finally:
        if test_process.poll() is None:
            test_process.kill()
            test_process.wait()
