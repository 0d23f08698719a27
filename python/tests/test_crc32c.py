"""CRC32C: the check value, and the vectorised path against the byte loop."""

import numpy as np
import pytest

from eddy.crc32c import _update_scalar, crc32c


def reference(data: bytes) -> int:
    return _update_scalar(0xFFFFFFFF, data) ^ 0xFFFFFFFF


def test_check_value():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


@pytest.mark.parametrize("n", [1, 59, 16383, 16384, 16385, 100_003, 1_000_000])
def test_vectorised_matches_byte_loop(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert crc32c(data) == reference(data)
    assert crc32c(np.frombuffer(data, np.uint8)) == reference(data)
    cut = n // 3
    assert crc32c(data[cut:], crc32c(data[:cut])) == reference(data)  # continued
