"""EchoCLIP's published reference video path (echonet/echo_CLIP utils.py + zero_shot_example.py), for parity and benchmarks.

Per frame: OpenCV decode (BGR, never converted), crop to aspect + 10 % zoom + cv2.INTER_CUBIC resize,
T.ToPILImage() -> open_clip preprocess_val; then frames [0 : min(40, n) : 2]. Test-only (needs opencv).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from open_clip.transform import PreprocessCfg, image_transform_v2

# What create_model_and_transforms("hf-hub:mkaichristensen/echo-clip") returns as preprocess_val:
# resize 224 bicubic (shortest side), centre crop 224, to tensor, CLIP mean/std.
preprocess_val = image_transform_v2(PreprocessCfg(), is_train=False)


def crop_and_scale(img: np.ndarray, res=(640, 480), interpolation=cv2.INTER_CUBIC, zoom=0.1) -> np.ndarray:
    """Verbatim logic of the published crop_and_scale (including its [p:-p] slices)."""
    in_res = (img.shape[1], img.shape[0])
    r_in = in_res[0] / in_res[1]
    r_out = res[0] / res[1]
    if r_in > r_out:
        padding = int(round((in_res[0] - r_out * in_res[1]) / 2))
        img = img[:, padding:-padding]
    if r_in < r_out:
        padding = int(round((in_res[1] - in_res[0] / r_out) / 2))
        img = img[padding:-padding]
    if zoom != 0:
        pad_x = round(int(img.shape[1] * zoom))
        pad_y = round(int(img.shape[0] * zoom))
        img = img[pad_y:-pad_y, pad_x:-pad_x]
    return cv2.resize(img, res, interpolation=interpolation)


def read_avi(path: str | Path, res=None) -> np.ndarray:
    """Every frame of the video via OpenCV (BGR), each crop_and_scale'd when `res` is given."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ret, frame = cap.read()
        if not ret:
            break
        if res is not None:
            frame = crop_and_scale(frame, res)
        frames.append(frame)
    cap.release()
    return np.array(frames)


def frames_to_pixels(frames: np.ndarray) -> torch.Tensor:
    """Published per-frame PIL path: T.ToPILImage() then preprocess_val, stacked."""
    return torch.stack([preprocess_val(T.ToPILImage()(frame)) for frame in frames], dim=0)


def reference_pixels(path: str | Path) -> torch.Tensor:
    """The zero-shot example's video tensor: (min(40,n)/2, 3, 224, 224)."""
    video = frames_to_pixels(read_avi(path, (224, 224)))
    return video[0 : min(40, len(video)) : 2]


def reference_embeddings(clip: torch.nn.Module, pixels: torch.Tensor) -> np.ndarray:
    """F.normalize(encode_image(video)) as the published example does (fp32 here)."""
    with torch.inference_mode():
        return F.normalize(clip.encode_image(pixels).float(), dim=-1).numpy()
