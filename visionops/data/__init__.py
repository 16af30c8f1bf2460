"""VISION data: loading, COCO -> YOLO conversion, data card, synthetic data, drift simulation."""
