"""Data: the data set catalog, COCO-format loading, the embedded shapes set, mapping and loaders."""
from .build import build_detection_test_loader, build_detection_train_loader
from .builtin import register_builtin_datasets
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .coco import filter_images, get_detection_dataset_dicts, load_coco_json, register_coco_instances
from .image_io import read_image
from .mapper import DatasetMapper
from .index_samplers import InferenceSampler, TrainingSampler
from .summary import summarize
from .transforms import RandomFlip, ResizeShortestEdge

__all__ = [
    "DatasetCatalog", "MetadataCatalog", "Metadata", "load_coco_json", "register_coco_instances",
    "get_detection_dataset_dicts", "filter_images", "summarize", "register_builtin_datasets",
    "read_image", "ResizeShortestEdge", "RandomFlip", "DatasetMapper", "TrainingSampler",
    "InferenceSampler", "build_detection_train_loader", "build_detection_test_loader",
]
