"""What every chart test checks: a PNG Slack can show, at the promised size, under the size limit."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from charts.style import DPI, MAX_PNG_BYTES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which the PNG format puts first."""
    assert png[:8] == PNG_MAGIC, "not a PNG"
    length, kind = struct.unpack(">I4s", png[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", png[16:24])


def assert_valid_png(png: bytes, inches: tuple[float, float]) -> None:
    assert png[:8] == PNG_MAGIC
    assert png_size(png) == (round(inches[0] * DPI), round(inches[1] * DPI))
    assert len(png) < MAX_PNG_BYTES, f"{len(png) / 1024:.0f} KB"
    image = Image.open(io.BytesIO(png))
    image.load()  # decodes every row: a truncated or corrupt file fails here
    pixels = np.asarray(image.convert("L"))
    # Something is drawn: a blank white canvas would pass every check above.
    assert (pixels < 128).mean() > 0.002


@pytest.fixture
def valid_png():
    return assert_valid_png
