"""Data path: first load of MNIST / Fashion-MNIST (decode IDX, cache tensors) against later loads (cache).

    python -m benchmarks.data_path

Uses the local copies (the MNIST subset beside this repository, Debian's Fashion-MNIST) in a temporary root.
"""

from __future__ import annotations

import tempfile
import time

from harness.data import images


def main() -> None:
    print("| dataset | first load: copy + decode + cache (s) | cached load (s) | images |\n|---|---:|---:|---:|")
    for name in ("mnist", "fashion_mnist"):
        with tempfile.TemporaryDirectory() as root:
            t0 = time.perf_counter()
            try:
                x, *_ = images.load_uint8(name, root, download=False)
            except images.DataError as err:
                print(f"| {name} | not available here: {str(err)[:80]}... | | |")
                continue
            first = time.perf_counter() - t0
            cached = []
            for _ in range(5):
                t0 = time.perf_counter()
                images.load_uint8(name, root, download=False)
                cached.append(time.perf_counter() - t0)
            print(f"| {name} | {first:.2f} | {sorted(cached)[2]:.3f} | {len(x)} train |")


if __name__ == "__main__":
    main()
