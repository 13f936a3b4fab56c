"""The ground floor: threads and their one owner, bounded queues with drop policies, the observer.

Everything else in streamdream may import from here; nothing here imports from above
(only the plain values in ``frames`` and ``errors``).
"""
