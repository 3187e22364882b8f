"""Bringing images to the model's square size: digits are padded/resized, photos cropped or squashed."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

_CHUNK = 4096  # images resized at a time, to bound the float copy


def fit_digits(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N, C, H, W] digits -> uint8 [N, C, size, size].

    28x28 digits (MNIST) are first zero-padded to 32x32 with the background value, as in the paper;
    anything not yet at ``size`` is then resized (bilinear, antialiased).
    """
    if images.shape[-2:] == (28, 28):
        images = F.pad(images, (2, 2, 2, 2), value=0)
    if images.shape[-2:] == (size, size):
        return images.contiguous()
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], _CHUNK):
        chunk = images[start:start + _CHUNK].float()
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start:start + _CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def fit_photo(image: Image.Image, size: int, mode: str = "RGB") -> np.ndarray:
    """A PIL image -> uint8 [C, size, size]: shorter side resized to ``size``, then center-cropped."""
    width, height = image.size
    scale = size / min(width, height)
    image.draft(mode, (max(size, round(width * scale)), max(size, round(height * scale))))  # fast JPEG decode
    image = image.convert(mode)
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def squash_photo(image: Image.Image, size: int, mode: str = "RGB") -> np.ndarray:
    """A PIL image -> uint8 [C, size, size]: the whole image resized to a square, aspect ratio not kept
    (bilinear, as the authors' ``scipy.misc.imresize(image, (64, 64))`` in ``tflib/lsun.py``)."""
    image.draft(mode, (size, size))  # fast JPEG decode at a scale still at least size x size
    image = image.convert(mode)
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


PHOTO_RESIZES = {"center-crop": fit_photo, "squash": squash_photo}  # data.lsun_resize -> how
