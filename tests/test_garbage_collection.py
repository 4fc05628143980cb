"""The control plane's collector settings (garbage_collection.py), in a process of their own:
they change the interpreter for good."""

from __future__ import annotations

import subprocess
import sys

from control_plane import garbage_collection

SETTLE = """
import gc
from control_plane import garbage_collection
before = gc.get_freeze_count()
garbage_collection.settle_after_startup()
print(before, gc.get_freeze_count(), *gc.get_threshold())
"""


def test_settling_leaves_the_started_heap_out_and_makes_collections_rare() -> None:
    shown = subprocess.run(
        [sys.executable, "-c", SETTLE], capture_output=True, text=True, check=True
    ).stdout
    before, frozen, *thresholds = map(int, shown.split())
    assert before == 0 and frozen > 1000  # the objects of the modules imported so far
    assert thresholds == [
        garbage_collection.YOUNG_COLLECTION_EVERY,
        garbage_collection.MIDDLE_COLLECTION_EVERY,
        garbage_collection.OLD_COLLECTION_EVERY,
    ]
    assert thresholds[0] > 700 * 10  # Python's default young threshold is 700
