"""The loop every simulator of the world runs: tick, wait, tick, until stopped."""

from __future__ import annotations

import threading


class Reconciler:
    """Calls `tick()` every `interval` seconds on a daemon thread. A failing tick is
    reported and the loop goes on, as a controller keeps reconciling."""

    name = "reconciler"
    interval = 0.25

    def start(self) -> None:
        self._stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True, name=self.name).start()

    def stop(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()

    def tick(self) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - keep reconciling; say why
                print(f"{self.name}: {exc!r}", flush=True)
