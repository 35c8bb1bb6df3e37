"""The process-wide decoding gate: however many threads decode, the pixels being decoded at
once stay within its capacity (what bounds a server's decoding memory)."""

from __future__ import annotations

import threading
import time

from deepfake_detection.data.decode import PixelGate


def test_the_gate_never_lets_more_pixels_than_its_capacity_decode_at_once():
    gate = PixelGate(100)
    inside, peak, lock = [0], [0], threading.Lock()

    def decode(pixels: int) -> None:
        with gate.hold(pixels):
            with lock:
                inside[0] += min(pixels, 100)
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= min(pixels, 100)

    sizes = [60, 60, 30, 30, 30, 500, 10, 90, 40, 0]  # 500: more than the gate, decoded alone
    threads = [threading.Thread(target=decode, args=(n,)) for n in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert peak[0] <= 100 and inside[0] == 0 and gate.free == 100
    assert peak[0] >= 60  # and it does let images decode side by side
