"""weedscan's runtime: decode an image, run the ONNX detector, answer over HTTP.

Only ONNX Runtime, OpenCV, NumPy, Pillow and FastAPI live here: never torch, never ultralytics,
never the `training` package.
"""
