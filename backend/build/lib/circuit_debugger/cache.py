"""Small thread-safe caches keyed by canonical request keys."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict


class LRU:
    def __init__(self, size: int):
        self.size, self.data, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        return None

    def put(self, key, value):
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return value


def request_key(*parts) -> str:
    return json.dumps(parts, sort_keys=True, default=str)
