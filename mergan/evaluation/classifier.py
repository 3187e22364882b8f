"""Evaluator classifiers: a small CNN trained on a dataset's real train split, cached on disk.

The cache key hashes the dataset's content (``ds.fingerprint``) with the classifier's
settings, so every run and trial on the same data reuses one evaluator and a change to
either retrains it. Several processes asking at once wait on a file lock; the winner
trains and renames its file into place atomically.

Cache layout: ``<cache_dir>/evaluators/<dataset>-<key>.pt`` (``{"state_dict", "meta"}``, readable
with ``torch.load(weights_only=True)``), ``<dataset>-<key>.json`` beside it (the same meta: real
test accuracy, training seconds, settings, dataset fingerprint) and a ``.lock`` file. The cache
dir is ``EvalConfig.cache_dir``, else $MERGAN_CACHE_DIR, else ~/.cache/mergan.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from filelock import FileLock
from torch import nn

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
FORWARD_BATCH = 1000  # images per forward pass when labelling or embedding


class EvaluatorError(ValueError):
    """An evaluator weights file that cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class ClassifierSettings:
    """Everything that decides an evaluator's weights besides the data (part of the cache key)."""

    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-3
    width: int = 16
    feature_dim: int = 128
    seed: int = 0
    max_shift_pixels: int = 2  # random-translation augmentation
    min_steps: int = 0  # train for more epochs when the data is too small for this many steps
    arch_version: int = 1  # bump when EvaluatorNet changes


class EvaluatorNet(nn.Module):
    """Conv-BN-ReLU-pool blocks down to 4x4, a ``feature_dim`` penultimate layer, a linear head."""

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 16,
                 feature_dim: int = 128):
        super().__init__()
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(f"EvaluatorNet needs a power-of-two image size >= 8, not {image_size}")
        layers: list[nn.Module] = []
        size, in_channels, out_channels = image_size, channels, width
        while size > 4:
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                       nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            size //= 2
            in_channels, out_channels = out_channels, min(out_channels * 2, 4 * width)
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(in_channels * 16, feature_dim),
                                  nn.ReLU(inplace=True))
        self.head = nn.Linear(feature_dim, num_classes)
        self.shape = {"channels": channels, "image_size": image_size, "num_classes": num_classes,
                          "width": width, "feature_dim": feature_dim}

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


def build_net(shape: dict[str, int], seed: int) -> EvaluatorNet:
    """A seeded EvaluatorNet built without consuming the global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return EvaluatorNet(**shape)


class Evaluator:
    """A trained classifier that labels and embeds images in batches, without gradients."""

    def __init__(self, net: EvaluatorNet, device: torch.device | str, test_accuracy: float,
                 cache_key: str, path: str | None = None, info: dict[str, Any] | None = None):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.test_accuracy = float(test_accuracy)
        self.cache_key = cache_key
        self.path = path
        self.info = dict(info or {})
        self.num_classes = net.shape["num_classes"]
        self.feature_dim = net.shape["feature_dim"]
        self.real_stats_memo: dict[Any, Any] = {}  # real-data feature statistics, reused across tasks

    @torch.inference_mode()
    def logits_and_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [n, classes] and penultimate features [n, d] in one forward, on the evaluator's device."""
        logits, features = [], []
        for chunk in images.split(FORWARD_BATCH):
            feature = self.net.features(chunk.to(self.device, torch.float32))
            features.append(feature)
            logits.append(self.net.head(feature))
        return torch.cat(logits), torch.cat(features)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted class of each image (LongTensor [n])."""
        return self.logits_and_features(images)[0].argmax(1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features [n, feature_dim]: the space of ``fid_classifier``."""
        return self.logits_and_features(images)[1]

    def describe(self) -> dict[str, Any]:
        return dict(path=self.path, cache_key=self.cache_key, test_accuracy=self.test_accuracy, **self.info)


# -- training ----------------------------------------------------------------------------
@contextlib.contextmanager
def deterministic_cudnn() -> Iterator[None]:
    """cuDNN picks deterministic kernels inside, and the caller's flags come back after."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels, filling with the background value -1."""
    if max_shift <= 0:
        return images
    n, _, height, width = images.shape
    padded = F.pad(images, [max_shift] * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=generator).to(images.device)
    rows = (dy + torch.arange(height, device=images.device))[:, :, None]  # [n, H, 1]
    cols = (dx + torch.arange(width, device=images.device))[:, None, :]  # [n, 1, W]
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def train_classifier(get_images: Callable[[torch.Tensor], torch.Tensor], labels: torch.Tensor,
                     shape: dict[str, int], settings: ClassifierSettings,
                     device: torch.device | str) -> EvaluatorNet:
    """Train an EvaluatorNet on (images, labels) with seeded shuffling and augmentation.

    ``get_images(indices)`` returns images in [-1, 1] for those indices (on any device), so
    both in-memory and lazily loaded image sets work. The global torch RNG is not touched.
    Bit-exact on CPU for a given thread count; on CUDA cuDNN is held to deterministic
    convolutions, though a few kernels (max-pool backward) may still differ in the last bits.
    """
    device = torch.device(device)
    net = build_net(dict(shape, width=settings.width, feature_dim=settings.feature_dim), settings.seed)
    net = net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    steps_per_epoch = -(-len(labels) // settings.batch_size)
    epochs = max(settings.epochs, -(-settings.min_steps // steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, pct_start=0.2,
                                                    total_steps=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(settings.seed)
    labels = labels.cpu()
    with deterministic_cudnn():
        for _ in range(epochs):
            order = torch.randperm(len(labels), generator=generator)
            for batch in order.split(settings.batch_size):
                images = get_images(batch).to(device, torch.float32)
                images = random_shift(images, settings.max_shift_pixels, generator)
                loss = F.cross_entropy(net(images), labels[batch].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
    return net.eval()


@torch.inference_mode()
def accuracy_on(net: EvaluatorNet, get_images: Callable[[torch.Tensor], torch.Tensor],
                labels: torch.Tensor, device: torch.device | str, label_map: torch.Tensor | None = None
                ) -> float:
    """Share of images whose argmax matches the label (``label_map`` maps net outputs to labels)."""
    net.eval()
    correct = 0
    for batch in torch.arange(len(labels)).split(FORWARD_BATCH):
        predicted = net(get_images(batch).to(device, torch.float32)).argmax(1).cpu()
        if label_map is not None:
            predicted = label_map[predicted]
        correct += int((predicted == labels[batch].cpu()).sum())
    return correct / max(len(labels), 1)


# -- cache -------------------------------------------------------------------------------
def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else $MERGAN_CACHE_DIR, else ~/.cache/mergan."""
    chosen = cache_dir or os.environ.get("MERGAN_CACHE_DIR") or Path.home() / ".cache" / "mergan"
    return Path(chosen).expanduser()


def settings_from_config(eval_config: Any) -> ClassifierSettings:
    return ClassifierSettings(epochs=int(eval_config.evaluator_epochs))


def net_shape(ds: Any) -> dict[str, int]:
    image_size = int(ds.train.get(torch.zeros(1, dtype=torch.long)).shape[-1])
    return {"channels": int(ds.channels), "image_size": image_size, "num_classes": int(ds.num_classes)}


def cache_key(ds: Any, settings: ClassifierSettings, shape: dict[str, int]) -> str:
    """Hash of the dataset's content, the image shape and the classifier settings."""
    text = json.dumps({"fingerprint": ds.fingerprint, "shape": shape, "settings": asdict(settings),
                           "format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(handle)
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def _read_weights(path: str | os.PathLike) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EvaluatorError(f"evaluator weights {path}: no such file") from None
    except Exception as error:  # noqa: BLE001 - a damaged file fails in many ways (KeyError, EOFError ...)
        raise EvaluatorError(f"evaluator weights {path}: cannot be read ({type(error).__name__}: "
                             f"{error}); give an EvaluatorNet state_dict saved with torch.save") from None
    if not isinstance(payload, dict):
        raise EvaluatorError(f"evaluator weights {path}: holds a {type(payload).__name__}, not a state_dict")
    return payload


def _net_from_state(state: dict[str, Any], shape: dict[str, int], width: int, feature_dim: int,
                    path: str | os.PathLike) -> EvaluatorNet:
    net = build_net(dict(shape, width=width, feature_dim=feature_dim), seed=0)
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise EvaluatorError(f"evaluator weights {path}: do not fit an EvaluatorNet for "
                             f"{shape} (width {width}, features {feature_dim}): {error}") from None
    return net


def _test_split(ds: Any) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    return ds.test.get, ds.test.labels


def load_evaluator_weights(path: str | os.PathLike, ds: Any, device: torch.device | str) -> Evaluator:
    """A bring-your-own evaluator: a cache file of this module or a bare EvaluatorNet state_dict.

    The real test accuracy is measured on ``ds.test``; the cache key names the file's content.
    """
    payload = _read_weights(path)
    shape = net_shape(ds)
    if "state_dict" in payload:
        state, meta = payload["state_dict"], payload.get("meta", {})
        width = int(meta.get("settings", {}).get("width", 16))
        feature_dim = int(meta.get("settings", {}).get("feature_dim", 128))
    else:
        state, width, feature_dim = payload, 16, 128
        linear = state.get("head.weight")
        if isinstance(linear, torch.Tensor):
            feature_dim = int(linear.shape[1])
        first = state.get("body.0.weight")
        if isinstance(first, torch.Tensor):
            width = int(first.shape[0])
    net = _net_from_state(state, shape, width, feature_dim, path).to(device)
    get_images, labels = _test_split(ds)
    accuracy = accuracy_on(net, get_images, labels, device)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:20]
    return Evaluator(net, device, accuracy, cache_key=f"file:{digest}", path=str(path),
                     info={"source": "evaluator_weights"})


def get_evaluator(ds: Any, eval_config: Any, device: torch.device | str, retrain: bool = False,
                  settings: ClassifierSettings | None = None) -> Evaluator:
    """The cached evaluator for ``ds`` (trained on ``ds.train`` the first time), or the user's weights.

    With ``eval_config.evaluator_weights`` set, that file is loaded instead (no training, no cache).
    """
    device = torch.device(device)
    if getattr(eval_config, "evaluator_weights", None):
        return load_evaluator_weights(eval_config.evaluator_weights, ds, device)
    settings = settings or settings_from_config(eval_config)
    shape = net_shape(ds)
    key = cache_key(ds, settings, shape)
    folder = default_cache_dir(getattr(eval_config, "cache_dir", None)) / "evaluators"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ds.name}-{key}.pt"
    with FileLock(str(path) + ".lock"):
        if path.exists() and not retrain:
            try:
                return _load_cached(path, key, shape, settings, device)
            except EvaluatorError as error:
                log.warning("retraining the evaluator: %s", error)
        return _train_and_store(ds, path, key, shape, settings, device)


def _load_cached(path: Path, key: str, shape: dict[str, int], settings: ClassifierSettings,
                 device: torch.device) -> Evaluator:
    payload = _read_weights(path)
    meta = payload.get("meta", {})
    if meta.get("cache_key") != key or "state_dict" not in payload:
        raise EvaluatorError(f"evaluator cache {path}: written for another key")
    net = _net_from_state(payload["state_dict"], shape, settings.width, settings.feature_dim, path)
    return Evaluator(net, device, meta["test_accuracy"], key, str(path), info=_info(meta, cached=True))


def _info(meta: dict[str, Any], cached: bool) -> dict[str, Any]:
    keep = ("dataset", "fingerprint", "train_seconds", "train_images", "test_images", "settings")
    return dict({k: meta[k] for k in keep if k in meta}, cached=cached, source="cache")


def _train_and_store(ds: Any, path: Path, key: str, shape: dict[str, int], settings: ClassifierSettings,
                     device: torch.device) -> Evaluator:
    start = time.perf_counter()
    log.info("training the evaluator for %s (%d images, %d epochs) into %s", ds.name, len(ds.train),
             settings.epochs, path)
    net = train_classifier(ds.train.get, ds.train.labels, shape, settings, device)
    seconds = time.perf_counter() - start
    get_images, labels = _test_split(ds)
    accuracy = accuracy_on(net, get_images, labels, device)
    meta = {"cache_key": key, "dataset": ds.name, "fingerprint": ds.fingerprint, "shape": shape,
                "settings": asdict(settings), "test_accuracy": accuracy, "train_seconds": round(seconds, 2),
                "train_images": len(ds.train), "test_images": len(ds.test), "format": CACHE_FORMAT,
                "torch": str(torch.__version__), "device": str(device), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    state = {name: tensor.detach().cpu() for name, tensor in net.state_dict().items()}
    _atomic_write(path, lambda temp: torch.save({"state_dict": state, "meta": meta}, temp))
    _atomic_write(path.with_suffix(".json"),
                  lambda temp: Path(temp).write_text(json.dumps(meta, indent=2) + "\n"))
    log.info("evaluator %s: real test accuracy %.4f, %.1f s", path, accuracy, seconds)
    return Evaluator(net, device, accuracy, key, str(path), info=_info(meta, cached=False))
