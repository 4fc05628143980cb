"""The garbage collector's settings for a control plane that holds thousands of requests.

A request's own objects are freed by reference counting as it ends (the server's objects of a
closed connection, which refer to each other, wait for a collection). With its default
settings the collector runs a young collection every 700 allocations and
rescans the older generations as the heap grows, which is most work when most is needed: with
10,000 streams waiting, it took about a sixth of the CPU of admitting them
(``bench/control_plane.py``, buffer figure). Collections are made much rarer, and what exists
once the control plane has started (modules, schemas, settings) is left out of them for good.
"""

from __future__ import annotations

import gc

YOUNG_COLLECTION_EVERY = 50_000  # allocations (net of frees) between young collections
MIDDLE_COLLECTION_EVERY = 20  # young collections between middle ones
OLD_COLLECTION_EVERY = 100  # middle collections between full ones (at most)


def settle_after_startup() -> None:
    """Call once the control plane has started."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, MIDDLE_COLLECTION_EVERY, OLD_COLLECTION_EVERY)
