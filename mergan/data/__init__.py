"""Datasets -> class-incremental task streams: embedded MNIST subset, MNIST, SVHN, LSUN, image folders.

See docs/interfaces.md ("Data").
"""

from mergan.data.dataset import ClassDataset
from mergan.data.errors import DatasetError
from mergan.data.imageset import ImageSet, TensorImageSet
from mergan.data.load import dataset_class_names, load_dataset, planned_task_stream
from mergan.data.lsun import LMDBImageSet
from mergan.data.tasks import task_stream

__all__ = ["ClassDataset", "DatasetError", "ImageSet", "LMDBImageSet", "TensorImageSet", "dataset_class_names",
           "load_dataset", "planned_task_stream", "task_stream"]
