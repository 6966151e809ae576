"""bevkd: cross-modal knowledge distillation for camera-only 3D object detection."""

__version__ = "0.1.0"
