"""Frame thumbnails: small JPEGs of the model's input crop (never the raw frame).

Cut from the 224x224 uint8 crop the model sees, before normalisation, so a thumbnail
holds no more of the image's burned-in text than the model did.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

THUMBNAIL_SIZE = 112  # longest side in pixels
JPEG_QUALITY = 80


def thumbnail_jpegs(
    crops: torch.Tensor | np.ndarray,
    *,
    size: int = THUMBNAIL_SIZE,
    quality: int = JPEG_QUALITY,
    channel_order: str = "rgb",
) -> list[bytes]:
    """(n,3,S,S) uint8 model-input crops -> one JPEG (<= `size` px per side, `quality`) per frame.

    `channel_order` is the crops' order ("bgr" when the video was prepared in the published code's BGR).
    """
    arr = crops.numpy() if isinstance(crops, torch.Tensor) else np.asarray(crops)
    if arr.ndim != 4 or arr.shape[1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"thumbnail_jpegs needs (n, 3, S, S) uint8 crops, got {arr.dtype} {arr.shape}")
    out: list[bytes] = []
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    for crop in arr:
        # HWC, and BGR for OpenCV's encoder.
        hwc = crop.transpose(1, 2, 0)
        image = np.ascontiguousarray(hwc[:, :, ::-1] if channel_order == "rgb" else hwc)
        h, w = image.shape[:2]
        scale = min(1.0, size / max(h, w))
        if scale < 1.0:
            image = cv2.resize(
                image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
            )
        ok, buf = cv2.imencode(".jpg", image, params)
        if not ok:  # OpenCV only fails here on an empty image, which the shape check rules out
            raise ValueError("JPEG encoding of a thumbnail failed")
        out.append(buf.tobytes())
    return out
