"""Object detection: COCO / Pascal VOC / YOLO adapters, box-aware augmentation, built-in scenes."""
