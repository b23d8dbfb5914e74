"""What the Ctrl-C tests share: the shape of the job they interrupt, and reading a child.

``test_interrupt.py`` (one worker, a cache) and ``test_claims_interrupt.py`` (claims, both
stores) interrupt the same job: 240 texts in requests of 8, two at a time, each answered
after ``LATENCY`` seconds, so that a SIGINT lands while requests are in flight.
"""

import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "text-embedding-3-small"
DIM = 16
N_TEXTS, BATCH, CONCURRENCY = 240, 8, 2  # 30 requests, 15 rounds of two
LATENCY = 0.08


def read_line(stream, timeout):
    """The next line of ``stream``, stripped, or ``None`` after ``timeout`` seconds."""
    line = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0].strip() if line else None
