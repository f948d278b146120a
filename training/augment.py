"""Augmentations for top-down field photos: any orientation is valid, light and focus vary."""

from __future__ import annotations

from typing import Any

# Ultralytics' own: flips both ways (a top-down photo has no "up"), HSV jitter, scale, mosaic.
ULTRALYTICS_AUGMENT: dict[str, Any] = {
    "fliplr": 0.5,
    "flipud": 0.5,
    "degrees": 0.0,  # arbitrary angles loosen boxes; 90-degree turns come from albumentations
    "hsv_h": 0.015,
    "hsv_s": 0.6,
    "hsv_v": 0.4,
    "scale": 0.5,
    "translate": 0.1,
    "mosaic": 1.0,
}


def field_transforms() -> list[Any]:
    """Albumentations applied after Ultralytics' own (on the square training tile)."""
    import albumentations as A

    return [
        A.RandomRotate90(p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.3),
        A.ColorJitter(brightness=0.0, contrast=0.0, saturation=0.2, hue=0.02, p=0.2),
        A.OneOf([A.MotionBlur(blur_limit=(3, 7)), A.GaussianBlur(blur_limit=(3, 5))], p=0.15),
        A.GaussNoise(std_range=(0.02, 0.06), p=0.15),
        A.ImageCompression(quality_range=(60, 95), p=0.2),
    ]


def describe() -> dict[str, Any]:
    """What the model card records about augmentation."""
    return {"ultralytics": ULTRALYTICS_AUGMENT,
            "albumentations": ["RandomRotate90(p=0.5)", "RandomBrightnessContrast(0.25, p=0.3)",
                               "ColorJitter(sat=0.2, hue=0.02, p=0.2)", "Motion/GaussianBlur(p=0.15)",
                               "GaussNoise(p=0.15)", "ImageCompression(60-95, p=0.2)"]}
