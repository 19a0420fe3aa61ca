"""Decoding one image file safely: every mode PIL reads, EXIF rotation, a decompression-bomb guard.

`inspect_image` answers "is this a usable image and what is it?" for the manifest;
`load_image` returns pixels at the model's geometry for the decoded cache (and for
`adaptflow predict`, so predictions see exactly what evaluation saw); `decoding_recipe` says
in words what it does, for exported models and the validation report.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


class ImageError(ValueError):
    """An image file that cannot be used; the message says why."""


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    mode: str


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Decode fully (so truncation is caught), refusing images over `max_pixels`."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    # validate.max_pixels is the guard, in place of Pillow's own limit (178,956,970 pixels): a
    # larger param must let larger images through. Pillow warns above its limit and refuses
    # above twice it; we refuse anything over it.
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{width}x{height} pixels is over validate.max_pixels={max_pixels} "
                    "(decompression-bomb guard)"
                )
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"over validate.max_pixels={max_pixels} pixels (decompression-bomb guard)"
        ) from None
    except Image.UnidentifiedImageError:
        raise ImageError("not an image PIL can identify") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"cannot be decoded ({error})") from None
    return image


def inspect_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Decode the bytes; return the upright size and mode, or raise ImageError if unusable."""
    image = _open(data, max_pixels)
    upright = ImageOps.exif_transpose(image)
    return ImageInfo(width=upright.width, height=upright.height, mode=image.mode)


def _to_8bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit grayscale to 8-bit by scaling the value range (PIL's convert clips)."""
    if image.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return image
    array = np.asarray(image, dtype=np.float64)
    peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
    return Image.fromarray(np.clip(array / peak * 255.0, 0, 255).round().astype(np.uint8), "L")


def _to_channels(image: Image.Image, channels: int) -> Image.Image:
    """Grayscale or RGB, compositing transparency onto black (the digits' background)."""
    image = _to_8bit(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert(pil_mode(channels))


def _fit(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to `size`, then centre-crop a square (torchvision's eval recipe)."""
    if image.size == (size, size):
        return image
    return ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)


def load_image(data: bytes, channels: int, size: int, max_pixels: int) -> np.ndarray:
    """Decode to a uint8 array of shape (channels, size, size), upright per EXIF."""
    image = ImageOps.exif_transpose(_open(data, max_pixels))
    image = _fit(_to_channels(image, channels), size)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def colour_name(channels: int) -> str:
    """How the pipeline names a channel count: 1 is grey, 3 is RGB."""
    return "grey" if channels == 1 else "RGB"


def pil_mode(channels: int) -> str:
    """The PIL mode images are converted to for a channel count."""
    return "L" if channels == 1 else "RGB"


# Names what `load_image` does to pixels. Bump it with any change to that result: a model
# exported under another name is then refused by `adaptflow predict` rather than fed differently.
DECODING = "adaptflow.load_image/1"


def decoding_recipe(channels: int, size: int) -> dict[str, str | int]:
    """What `load_image` does, step by step (DECODING names it; the rest says it in words):
    recorded in exported models so that a model file alone says how to feed it."""
    return {
        "decoding": DECODING,
        "decoder": "PIL; orientation from EXIF applied",
        "bit_depth": "16/32-bit grey scaled to 8 bits by its value range",
        "alpha": "transparency composited onto black",
        "channels": channels,
        "colour": f"converted to {colour_name(channels)} (PIL mode {pil_mode(channels)})",
        "size": size,
        "resize": f"centre crop to a square, then resize to {size}x{size} "
        "(bilinear; PIL ImageOps.fit); images already that size are left as they are",
        "scale": "uint8 / 255 -> float32 in [0, 1], layout (batch, channels, height, width)",
    }
