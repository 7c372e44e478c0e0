"""The frame a VLM is shown: candidate ids drawn at their objects, encoded as a PNG data URL.

Drawing uses OpenCV when it is installed (the ``world`` extra) and a built-in 3 × 5 pixel font
otherwise, so the lean robot install can still send annotated frames; PNG encoding is the standard
library's zlib. Pixels come from a candidate's ``pixel`` or from projecting its mouth/top keypoint
with the camera's intrinsics and pose.
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

__all__ = ["draw_ids", "png_bytes", "data_url", "candidate_pixels"]

# 3 × 5 glyphs, rows top to bottom, 3 bits each (MSB left)
_FONT = {
    "0": "7,5,5,5,7", "1": "2,6,2,2,7", "2": "7,1,7,4,7", "3": "7,1,3,1,7", "4": "5,5,7,1,1", "5": "7,4,7,1,7",
    "6": "7,4,7,5,7", "7": "7,1,1,2,2", "8": "7,5,7,5,7", "9": "7,5,7,1,7", "a": "2,5,7,5,5", "b": "6,5,6,5,6",
    "c": "3,4,4,4,3", "d": "6,5,5,5,6", "e": "7,4,6,4,7", "f": "7,4,6,4,4", "g": "3,4,5,5,3", "h": "5,5,7,5,5",
    "i": "7,2,2,2,7", "j": "1,1,1,5,2", "k": "5,5,6,5,5", "l": "4,4,4,4,7", "m": "5,7,7,5,5", "n": "6,5,5,5,5",
    "o": "2,5,5,5,2", "p": "6,5,6,4,4", "q": "2,5,5,6,3", "r": "6,5,6,5,5", "s": "3,4,2,1,6", "t": "7,2,2,2,2",
    "u": "5,5,5,5,7", "v": "5,5,5,5,2", "w": "5,5,7,7,5", "x": "5,5,2,5,5", "y": "5,5,2,2,2", "z": "7,1,2,4,7",
    "_": "0,0,0,0,7", "-": "0,0,7,0,0", " ": "0,0,0,0,0",
}


def _text_mask(text: str, scale: int) -> np.ndarray:
    cols = []
    for ch in text.lower():
        rows = [int(r) for r in _FONT.get(ch, "7,5,5,5,7").split(",")]
        g = np.array([[(r >> (2 - b)) & 1 for b in range(3)] for r in rows], bool)
        cols += [g, np.zeros((5, 1), bool)]
    m = np.concatenate(cols[:-1], axis=1) if cols else np.zeros((5, 1), bool)
    return np.kron(m, np.ones((scale, scale), bool))


def candidate_pixels(cands, intrinsics=None, camera_pose=None) -> dict[str, tuple[float, float]]:
    """id → (u, v): a candidate's ``pixel``, else its K_p1 (or position) projected into the image."""
    out = {}
    for c in cands:
        if c.pixel is not None:
            out[c.id] = tuple(c.pixel)
        elif intrinsics is not None and camera_pose is not None:
            from kinebridge.drivers.camera.geometry import project

            p = c.keypoints.get("K_p1", c.position)
            uv, z = project(np.asarray([p], float), intrinsics, camera_pose)
            if z[0] > 0 and np.all(np.isfinite(uv[0])):
                out[c.id] = (float(uv[0, 0]), float(uv[0, 1]))
    return out


def draw_ids(rgb: np.ndarray, cands, intrinsics=None, camera_pose=None) -> np.ndarray:
    """A copy of ``rgb`` (H, W, 3 uint8) with each candidate's id drawn above its pixel (white on black)."""
    img = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., :3]).copy()
    if img.ndim != 3:
        raise ValueError(f"image: expected (H, W, 3) uint8, got shape {img.shape}")
    h, w = img.shape[:2]
    scale = max(2, round(h / 240))
    try:
        import cv2
    except ImportError:
        cv2 = None
    for cid, (u, v) in candidate_pixels(cands, intrinsics, camera_pose).items():
        u, v = int(round(u)), int(round(v))
        if cv2 is not None:
            fs = 0.4 * scale
            (tw, th), base = cv2.getTextSize(cid, cv2.FONT_HERSHEY_SIMPLEX, fs, scale)
            x0, y0 = min(max(u - tw // 2, 0), max(w - tw - 4, 0)), min(max(v - 12 * scale, th + 4), h - 2)
            cv2.rectangle(img, (x0 - 2, y0 - th - 4), (x0 + tw + 2, y0 + base), (0, 0, 0), -1)
            cv2.putText(img, cid, (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), scale, cv2.LINE_AA)
            cv2.circle(img, (u, v), 2 * scale, (255, 255, 255), -1)
            continue
        m = _text_mask(cid, scale)
        mh, mw = m.shape
        x0 = min(max(u - mw // 2, 1), max(w - mw - 1, 1))
        y0 = min(max(v - mh - 6 * scale, 1), max(h - mh - 1, 1))
        y1, x1 = min(y0 + mh, h), min(x0 + mw, w)
        img[max(y0 - 1, 0):min(y1 + 1, h), max(x0 - 1, 0):min(x1 + 1, w)] = 0
        img[y0:y1, x0:x1][m[:y1 - y0, :x1 - x0]] = 255
        if 0 <= v < h and 0 <= u < w:
            img[max(v - scale, 0):v + scale, max(u - scale, 0):u + scale] = 255
    return img


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG of an (H, W, 3) uint8 image (zlib, no other dependency)."""
    a = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., :3])
    h, w = a.shape[:2]
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def data_url(image) -> str:
    """``image`` as a ``data:image/png;base64,…`` URL (an array is PNG-encoded; a data URL passes through)."""
    if isinstance(image, str):
        if not image.startswith("data:image/"):
            raise ValueError("image: expected an (H, W, 3) array or a data:image/… URL")
        return image
    if isinstance(image, (bytes, bytearray)):
        return "data:image/png;base64," + base64.b64encode(bytes(image)).decode("ascii")
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")
