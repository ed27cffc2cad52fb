"""retinadet: RetinaNet and the focal loss in a detectron2-style framework of registered parts."""
__version__ = "0.1.0"
