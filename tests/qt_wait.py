"""Waiting on a condition while Qt runs, where ``qtbot`` cannot be used (module-scoped fixtures)."""

import time


def wait_for(qapp, condition, timeout_ms: int) -> bool:
    """Process Qt events until ``condition()`` holds or ``timeout_ms`` passes; returns its last value."""
    end = time.perf_counter() + timeout_ms / 1000
    while time.perf_counter() < end:
        qapp.processEvents()
        if condition():
            return True
        time.sleep(0.005)
    return condition()
