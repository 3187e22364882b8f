"""Evaluator classifiers trained on a dataset's real train split, cached on disk.

``eval.evaluator: cnn`` is a small CNN for every dataset (``EvaluatorNet``); ``paper`` is the authors'
evaluator of the dataset (``paper_nets``: an MLP for MNIST, their conv net for SVHN, a 10-way VGG16
for LSUN over the ten categories found under the data root, read through the label map), trained
with their recipe as far as their released graphs show it (``RECIPES``).

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
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from filelock import FileLock
from torch import nn

from mergan.evaluation.paper_nets import build_paper_net
from mergan.files import atomic_path

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
    feature_dim: int = 128  # cnn only; the authors' nets have their own
    seed: int = 0
    max_shift_pixels: int = 2  # random-translation augmentation
    min_steps: int = 0  # train for more epochs when the data is too small for this many steps
    arch_version: int = 1  # bump when EvaluatorNet changes
    arch: str = "cnn"  # cnn (EvaluatorNet) or one of the authors' nets: mlp, convnet, vgg16
    betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: str = "one-cycle"  # or "constant"
    dropout: float = 0.0  # after the first fully connected layer (the authors' conv nets)


# How each architecture is trained. The authors' MNIST and SVHN training graphs (pretrain/*/*.meta) hold
# Adam(2e-4, beta1 0.5, beta2 0.999), batch 256, softmax cross-entropy, no augmentation, dropout 0.5 after
# SVHN's first fully connected layer, and 10,197 / 25,654 steps (about 47 / 90 epochs of their 55,000 /
# 73,257 images). No LSUN graph was released: its VGG16 gets the SVHN recipe and 6 epochs. No net starts
# from their truncated normal of std 0.001: through five or more plain layers that starts with a vanishing
# signal, and on mnist5k the MLP reached 34% after 47 epochs from it against 95% from PyTorch's default
# (the MLP's start here); the conv nets start as torchvision's VGG (paper_nets, docs/fidelity.md).
PAPER_ADAM = dict(lr=2e-4, betas=(0.5, 0.999), lr_schedule="constant", max_shift_pixels=0)
RECIPES = {
    "cnn": ClassifierSettings(),
    "mlp": ClassifierSettings(arch="mlp", epochs=47, batch_size=256, width=1024, **PAPER_ADAM),
    "convnet": ClassifierSettings(arch="convnet", epochs=90, batch_size=256, width=32, dropout=0.5, **PAPER_ADAM),
    "vgg16": ClassifierSettings(arch="vgg16", epochs=6, batch_size=64, width=64, dropout=0.5, **PAPER_ADAM),
}
# eval.evaluator: paper -> the authors' architecture for the dataset.
PAPER_ARCHITECTURES = {"mnist5k": "mlp", "mnist": "mlp", "svhn": "convnet", "lsun": "vgg16"}


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

    def description(self) -> str:
        blocks = sum(isinstance(m, nn.Conv2d) for m in self.body)
        return (f"a small CNN: {blocks} conv-BN-ReLU-pool blocks from width {self.shape['width']}, "
                f"{self.shape['feature_dim']} features")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


def build_net(shape: dict[str, Any], seed: int) -> nn.Module:
    """A seeded evaluator net of ``shape["arch"]`` (cnn when absent) built without consuming the global torch RNG."""
    shape = dict(shape)
    arch = shape.pop("arch", "cnn")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch == "cnn":
            shape.pop("dropout", None)
            return EvaluatorNet(**shape)
        shape.pop("feature_dim", None)
        return build_paper_net(arch, **shape)


def net_shape_for(shape: dict[str, Any], settings: ClassifierSettings) -> dict[str, Any]:
    """The data's shape (channels, image size, classes) plus the settings' architecture and widths."""
    if settings.arch == "cnn":
        return dict(shape, width=settings.width, feature_dim=settings.feature_dim)
    return dict(shape, arch=settings.arch, width=settings.width, dropout=settings.dropout)


class Evaluator:
    """A trained classifier that labels and embeds images in batches, without gradients.

    ``label_map[c]`` is the output that means the judged dataset's class c (the authors' LSUN
    evaluator: bedroom, kitchen, church_outdoor, tower are outputs 0, 1, 8, 6 of ten); None: output c.
    """

    def __init__(self, net: nn.Module, device: torch.device | str, test_accuracy: float,
                 cache_key: str, path: str | None = None, info: dict[str, Any] | None = None,
                 label_map: list[int] | None = None):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.test_accuracy = float(test_accuracy)
        self.cache_key = cache_key
        self.path = path
        self.info = dict(info or {})
        self.num_classes = net.shape["num_classes"]
        self.feature_dim = net.shape["feature_dim"]
        self.arch = net.shape.get("arch", "cnn")
        self.label_map = None if label_map is None else [int(c) for c in label_map]
        self.real_stats_memo: dict[Any, Any] = {}  # real-data feature statistics, reused across tasks

    def output_of(self, cls: int) -> int:
        """The evaluator's output that stands for the judged dataset's class ``cls``."""
        return int(cls) if self.label_map is None else self.label_map[int(cls)]

    @property
    def chance_accuracy(self) -> float:
        """What a classifier that guesses uniformly scores: 1 / its number of outputs."""
        return 1.0 / self.num_classes

    def description(self) -> str:
        return self.net.description()

    def result_fields(self) -> dict[str, Any]:
        """What a run records of its evaluator (results.json's ``extra``, MLflow params)."""
        return {"evaluator_cache_key": self.cache_key, "evaluator_test_accuracy": self.test_accuracy,
                "evaluator_architecture": self.description(), "evaluator_classes": self.num_classes,
                "evaluator_chance_accuracy": self.chance_accuracy}

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
        return dict(path=self.path, cache_key=self.cache_key, test_accuracy=self.test_accuracy,
                    architecture=self.description(), classes=self.num_classes, chance_accuracy=self.chance_accuracy,
                    label_map=self.label_map, **self.info)


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
                     device: torch.device | str) -> nn.Module:
    """Train the settings' architecture on (images, labels) with seeded shuffling and augmentation.

    ``get_images(indices)`` returns images in [-1, 1] for those indices (on any device), so
    both in-memory and lazily loaded image sets work. The global torch RNG is not touched.
    Bit-exact on CPU for a given thread count; on CUDA cuDNN is held to deterministic
    convolutions, though a few kernels (max-pool backward) may still differ in the last bits.
    """
    device = torch.device(device)
    net = build_net(net_shape_for(shape, settings), settings.seed)
    net = net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr, betas=tuple(settings.betas))
    steps_per_epoch = -(-len(labels) // settings.batch_size)
    epochs = max(settings.epochs, -(-settings.min_steps // steps_per_epoch))
    scheduler = (torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, pct_start=0.2,
                                                     total_steps=epochs * steps_per_epoch)
                 if settings.lr_schedule == "one-cycle" else torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0))
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
def accuracy_on(net: nn.Module, get_images: Callable[[torch.Tensor], torch.Tensor],
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


def cnn_settings(eval_config: Any) -> ClassifierSettings:
    """The small CNN's recipe, with the config's epochs (reverse accuracy's classifier is always this one)."""
    epochs = getattr(eval_config, "evaluator_epochs", None)
    return replace(RECIPES["cnn"], epochs=int(epochs)) if epochs else RECIPES["cnn"]


def evaluator_architecture(kind: str, dataset: str) -> str:
    """``eval.evaluator`` (cnn or paper) for ``dataset`` -> the architecture (cnn, mlp, convnet, vgg16)."""
    if kind == "cnn":
        return "cnn"
    if kind != "paper":
        raise EvaluatorError(f"eval.evaluator: {kind!r} is not allowed; allowed: cnn, paper")
    if dataset not in PAPER_ARCHITECTURES:
        raise EvaluatorError(f"eval.evaluator: the authors published evaluators for "
                             f"{', '.join(PAPER_ARCHITECTURES)}, not {dataset!r}; use cnn")
    return PAPER_ARCHITECTURES[dataset]


def evaluator_settings(eval_config: Any, dataset: str) -> ClassifierSettings:
    """The recipe of the config's evaluator for ``dataset``, with its epochs and width where the config sets them."""
    recipe = RECIPES[evaluator_architecture(getattr(eval_config, "evaluator", "cnn"), dataset)]
    epochs, width = getattr(eval_config, "evaluator_epochs", None), getattr(eval_config, "evaluator_width", None)
    return replace(recipe, epochs=int(epochs or recipe.epochs), width=int(width or recipe.width))


def net_shape(ds: Any) -> dict[str, int]:
    image_size = int(ds.train.get(torch.zeros(1, dtype=torch.long)).shape[-1])
    return {"channels": int(ds.channels), "image_size": image_size, "num_classes": int(ds.num_classes)}


def cache_key(ds: Any, settings: ClassifierSettings, shape: dict[str, int]) -> str:
    """Hash of the dataset's content, the image shape and the classifier settings."""
    text = json.dumps({"fingerprint": ds.fingerprint, "shape": shape, "settings": asdict(settings),
                           "format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _read_weights(path: str | os.PathLike) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EvaluatorError(f"evaluator weights {path}: no such file") from None
    except Exception as error:  # noqa: BLE001 - a damaged file fails in many ways (KeyError, EOFError ...)
        raise EvaluatorError(f"evaluator weights {path}: cannot be read ({type(error).__name__}: "
                             f"{error}); give an evaluator state_dict saved with torch.save") from None
    if not isinstance(payload, dict):
        raise EvaluatorError(f"evaluator weights {path}: holds a {type(payload).__name__}, not a state_dict")
    return payload


def _net_from_state(state: dict[str, Any], shape: dict[str, Any], path: str | os.PathLike) -> nn.Module:
    net = build_net(shape, seed=0)
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        what = {k: v for k, v in shape.items() if k != "dropout"}
        raise EvaluatorError(f"evaluator weights {path}: do not fit the evaluator {what}: {error}") from None
    return net


def evaluator_dataset(ds: Any, arch: str, data_config: Any = None) -> tuple[Any, str | None]:
    """The data the evaluator of ``arch`` learns from, and a one-line note when it is not the authors'.

    The authors' LSUN evaluator is 10-way over ten scene categories; here it learns every one of them
    found under the data root (read as ``ds`` is: same cap, balance and resize). Elsewhere: ``ds``.
    """
    if arch != "vgg16" or ds.name != "lsun":
        return ds, None
    from mergan.data.lsun import AUTHORS_CATEGORIES, categories_under, load_lsun

    root = getattr(data_config, "data_root", None)
    found = categories_under(root) if root else list(ds.class_names)
    if len(found) == len(AUTHORS_CATEGORIES):
        return load_lsun(data_config, ds.image_size, found), None
    missing = [c for c in AUTHORS_CATEGORIES if c not in found]
    note = (f"eval.evaluator paper: {len(found)} of the ten LSUN categories of the authors' evaluator are under "
            f"{root or 'the data root'} (missing {', '.join(missing)}): the evaluator is {len(found)}-way, chance "
            f"{1 / len(found):.1%}, not 10-way with chance 10%")
    if root and set(found) > set(ds.class_names):
        return load_lsun(data_config, ds.image_size, found), note
    return ds, note


def label_map_for(ds: Any, judged_by: Any) -> list[int] | None:
    """Per class of ``ds``, the class of ``judged_by`` with the same name (None when they are the same classes)."""
    if list(judged_by.class_names) == list(ds.class_names):
        return None
    return [list(judged_by.class_names).index(name) for name in ds.class_names]


def load_evaluator_weights(path: str | os.PathLike, ds: Any, device: torch.device | str,
                           settings: ClassifierSettings | None = None) -> Evaluator:
    """A bring-your-own evaluator: a cache file of this module or a bare state_dict of ``settings.arch``
    (default cnn) whose outputs are ``ds``'s classes.

    The real test accuracy is measured on ``ds.test``; the cache key names the file's content.
    """
    settings = settings or RECIPES["cnn"]
    payload = _read_weights(path)
    shape = net_shape(ds)
    if "state_dict" in payload:
        state, meta = payload["state_dict"], payload.get("meta", {})
        saved = meta.get("settings", {})
        arch = saved.get("arch", "cnn")
        shape = net_shape_for(shape, replace(RECIPES[arch], width=int(saved.get("width", RECIPES[arch].width)),
                                             feature_dim=int(saved.get("feature_dim", 128))))
    else:
        state = payload
        first = state.get("body.1.weight" if settings.arch == "mlp" else "body.0.weight")  # its width: output size
        width = int(first.shape[0]) if isinstance(first, torch.Tensor) else settings.width
        linear = state.get("head.weight")
        feature_dim = int(linear.shape[1]) if isinstance(linear, torch.Tensor) else settings.feature_dim
        shape = net_shape_for(shape, replace(settings, width=width, feature_dim=feature_dim))
    net = _net_from_state(state, shape, path).to(device)
    accuracy = accuracy_on(net, ds.test.get, ds.test.labels, device)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:20]
    return Evaluator(net, device, accuracy, cache_key=f"file:{digest}", path=str(path),
                     info={"source": "evaluator_weights"})


def get_evaluator(ds: Any, eval_config: Any, device: torch.device | str, retrain: bool = False,
                  settings: ClassifierSettings | None = None, data_config: Any = None) -> Evaluator:
    """The cached evaluator for ``ds`` (trained the first time), or the user's weights.

    ``eval_config.evaluator`` picks the architecture (cnn, or the authors' for the dataset); the
    authors' LSUN one learns the ten categories found under ``data_config.data_root`` and judges
    ``ds``'s classes through the label map. With ``eval_config.evaluator_weights`` set, that file is
    loaded instead (no training, no cache).
    """
    device = torch.device(device)
    settings = settings or evaluator_settings(eval_config, ds.name)
    learned, note = evaluator_dataset(ds, settings.arch, data_config)
    if note:
        log.warning("%s", note)
    if getattr(eval_config, "evaluator_weights", None):
        evaluator = load_evaluator_weights(eval_config.evaluator_weights, learned, device, settings)
    else:
        evaluator = _cached_evaluator(learned, eval_config, settings, device, retrain)
    evaluator.label_map = label_map_for(ds, learned)
    if note:
        evaluator.info["note"] = note
    return evaluator


def _cached_evaluator(ds: Any, eval_config: Any, settings: ClassifierSettings, device: torch.device,
                      retrain: bool) -> Evaluator:
    """The evaluator of ``settings`` for ``ds`` from the cache, trained and stored there the first time."""
    shape = net_shape(ds)
    key = cache_key(ds, settings, shape)
    folder = default_cache_dir(getattr(eval_config, "cache_dir", None)) / "evaluators"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ds.name}-{settings.arch}-{key}.pt"
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
    net = _net_from_state(payload["state_dict"], net_shape_for(shape, settings), path)
    return Evaluator(net, device, meta["test_accuracy"], key, str(path), info=_info(meta, cached=True))


def _info(meta: dict[str, Any], cached: bool) -> dict[str, Any]:
    keep = ("dataset", "fingerprint", "train_seconds", "train_images", "test_images", "settings", "class_names")
    return dict({k: meta[k] for k in keep if k in meta}, cached=cached, source="cache")


def _train_and_store(ds: Any, path: Path, key: str, shape: dict[str, int], settings: ClassifierSettings,
                     device: torch.device) -> Evaluator:
    start = time.perf_counter()
    log.info("training the %s evaluator for %s (%d images, %d epochs) into %s", settings.arch, ds.name,
             len(ds.train), settings.epochs, path)
    net = train_classifier(ds.train.get, ds.train.labels, shape, settings, device)
    seconds = time.perf_counter() - start
    accuracy = accuracy_on(net, ds.test.get, ds.test.labels, device)
    meta = {"cache_key": key, "dataset": ds.name, "class_names": list(ds.class_names), "fingerprint": ds.fingerprint,
                "shape": shape, "settings": asdict(settings), "architecture": net.description(),
                "test_accuracy": accuracy, "train_seconds": round(seconds, 2),
                "train_images": len(ds.train), "test_images": len(ds.test), "format": CACHE_FORMAT,
                "torch": str(torch.__version__), "device": str(device), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    state = {name: tensor.detach().cpu() for name, tensor in net.state_dict().items()}
    with atomic_path(path) as temporary:
        torch.save({"state_dict": state, "meta": meta}, temporary)
    with atomic_path(path.with_suffix(".json")) as temporary:
        temporary.write_text(json.dumps(meta, indent=2) + "\n")
    log.info("evaluator %s: real test accuracy %.4f, %.1f s", path, accuracy, seconds)
    return Evaluator(net, device, accuracy, key, str(path), info=_info(meta, cached=False))
