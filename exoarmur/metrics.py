"""Process measurements the services expose on /metrics."""

from __future__ import annotations

import psutil


def process_rss_bytes() -> int:
    return psutil.Process().memory_info().rss
