"""Decoding: every mode and size is handled, broken files are refused with a reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from adaptflow.data.images import ImageError, inspect_image, load_image

MAX_PIXELS = 10_000_000


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def gradient(mode: str, size=(20, 10)) -> Image.Image:
    array = np.tile(np.linspace(0, 255, size[0], dtype=np.uint8), (size[1], 1))
    grey = Image.fromarray(array, "L")
    return grey if mode == "L" else grey.convert(mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "1"])
@pytest.mark.parametrize("channels", [1, 3])
def test_common_modes_decode_to_the_requested_channels_and_size(mode, channels):
    data = encode(gradient(mode))
    array = load_image(data, channels=channels, size=8, max_pixels=MAX_PIXELS)
    assert array.shape == (channels, 8, 8) and array.dtype == np.uint8


def test_16_bit_grey_is_scaled_not_clipped():
    array16 = (np.linspace(0, 65535, 16 * 16).reshape(16, 16)).astype(np.uint16)
    data = encode(Image.fromarray(array16))  # PIL infers mode I;16
    decoded = load_image(data, channels=1, size=16, max_pixels=MAX_PIXELS)
    assert decoded.max() == 255 and decoded.min() == 0
    assert 100 < decoded.mean() < 155  # a full-range ramp stays a ramp, not a white image


def test_transparency_is_composited_on_black():
    rgba = Image.new("RGBA", (8, 8), (255, 255, 255, 0))
    decoded = load_image(encode(rgba), channels=1, size=8, max_pixels=MAX_PIXELS)
    assert decoded.max() == 0


def test_exif_rotation_is_applied():
    tall = Image.new("L", (10, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    data = encode(tall, "JPEG", exif=exif)
    info = inspect_image(data, MAX_PIXELS)
    assert (info.width, info.height) == (20, 10)


def test_non_square_images_are_centre_cropped_to_a_square():
    image = Image.new("L", (40, 20), 0)
    image.paste(255, (10, 0, 30, 20))  # bright centre, dark sides
    decoded = load_image(encode(image), channels=1, size=10, max_pixels=MAX_PIXELS)
    assert decoded.shape == (1, 10, 10) and decoded.min() > 200


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"this is a text file, not an image", "not an image"),
        (encode(gradient("L"))[:60], "cannot be decoded"),
        (encode(gradient("RGB"), "JPEG")[:200], "cannot be decoded"),
    ],
    ids=["zero-byte", "not-an-image", "truncated-png", "truncated-jpeg"],
)
def test_broken_files_are_refused_with_a_reason(data, reason):
    with pytest.raises(ImageError, match=reason):
        inspect_image(data, MAX_PIXELS)


def test_huge_images_are_refused_before_decoding():
    data = encode(Image.new("L", (4000, 3000)))  # compresses to a few KB
    with pytest.raises(ImageError, match="decompression-bomb guard"):
        inspect_image(data, max_pixels=1_000_000)


def test_validate_max_pixels_replaces_pillows_own_limit():
    # 100 Mpx is over Pillow's default limit (89.5 Mpx warns, 179 Mpx refuses): the param decides
    size = (10_000, 10_000)
    data = encode(Image.new("L", size))
    assert inspect_image(data, max_pixels=120_000_000).width == 10_000
    with pytest.raises(ImageError, match=r"over validate.max_pixels=50000000 pixels"):
        inspect_image(data, max_pixels=50_000_000)
