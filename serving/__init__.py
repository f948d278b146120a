"""weedscan's runtime: decode an image, run the ONNX detector, answer over HTTP.

Only ONNX Runtime, OpenCV, NumPy, Pillow and FastAPI live here: never torch, never ultralytics,
never the `training` package.
"""

import os

# ONNX Runtime's Linux wheels carry Microsoft's telemetry client, which starts DNS lookups for its
# event endpoint a few seconds after a session is created (seen with 1.32; tests/robustness/
# test_no_network.py catches it at the syscall level). Only this variable, set before
# onnxruntime is imported, stops it; weedscan never sends anything anywhere.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
