"""The MeRGAN paper's published numbers (Wu et al., NeurIPS 2018; /work/shared/PAPER.md) and method names.

Accuracies are percentages, as printed in the paper; FID is the raw distance.
"""

from __future__ import annotations

from mergan.config import PAPER_METHODS

# Display names (the paper's own spelling).
METHOD_LABELS = {"jt": "JT", "sft": "SFT", "ewc": "EWC", "dgr": "DGR", "jtr": "MeRGAN-JTR", "ra": "MeRGAN-RA",
                 "jt-stream": "JT (streamed)", "er": "ER", "l2": "L2"}
NOT_IN_PAPER_MARK = "*"  # after the label of a row whose method the paper does not have

# Table 1: average accuracy (%) over the classes seen, by paper dataset, number of tasks, method.
TABLE1: dict[str, dict[int, dict[str, float]]] = {
    "MNIST": {
        5: {"jt": 97.66, "sft": 19.87, "ewc": 70.62, "dgr": 90.39, "jtr": 97.93, "ra": 98.19},
        10: {"jt": 96.92, "sft": 10.06, "ewc": 77.03, "dgr": 85.40, "jtr": 97.00, "ra": 97.01},
    },
    "SVHN": {
        5: {"jt": 85.30, "sft": 19.35, "ewc": 39.84, "dgr": 61.29, "jtr": 80.90, "ra": 76.05},
        10: {"jt": 84.82, "sft": 10.10, "ewc": 33.02, "dgr": 47.28, "jtr": 66.50, "ra": 66.78},
    },
}
TABLE1_TASKS = (5, 10)

# Table 2: LSUN after the 4th task, by metric name (as logged by mergan) and method. No JT column.
TABLE2: dict[str, dict[str, float]] = {
    "avg_acc": {"sft": 15.02, "ewc": 14.28, "dgr": 15.40, "jtr": 79.19, "ra": 81.03},
    "reverse_acc": {"sft": 28.0, "ewc": 63.35, "dgr": 26.17, "jtr": 70.00, "ra": 83.62},
    "fid_inception": {"sft": 110.12, "ewc": 178.05, "dgr": 93.70, "jtr": 49.69, "ra": 37.73},
}
TABLE2_TASKS = 4
TABLE2_LABELS = {"avg_acc": "Acc. (%)", "reverse_acc": "Rev. acc. (%)", "fid_inception": "FID"}

# mergan dataset name -> the paper's dataset whose rows it is compared with.
PAPER_DATASETS = {"mnist": "MNIST", "mnist5k": "MNIST", "svhn": "SVHN", "lsun": "LSUN"}


def paper_dataset(dataset: str) -> str | None:
    """``"mnist5k"`` -> ``"MNIST"``; None for a dataset the paper does not report (e.g. ``folder``)."""
    return PAPER_DATASETS.get(dataset.lower())


def method_label(method: str) -> str:
    """``"ra"`` -> ``"MeRGAN-RA"``; combinations join the parts: ``"jtr+ra"`` -> ``"MeRGAN-JTR+RA"``."""
    parts = [p.strip() for p in method.split("+")]
    if len(parts) == 1:
        return METHOD_LABELS.get(parts[0], parts[0])
    short = [METHOD_LABELS.get(p, p).removeprefix("MeRGAN-") for p in parts]
    prefix = "MeRGAN-" if any(p in ("jtr", "ra") for p in parts) else ""
    return prefix + "+".join(short)


def in_paper(method: str) -> bool:
    """True for the paper's six methods; False for this platform's additions (ER, L2, JT streamed),
    combinations (jtr+ra) and plugins."""
    return method in PAPER_METHODS


def method_sort_key(method: str) -> tuple[int, str]:
    """Paper order first (JT, SFT, EWC, DGR, JTR, RA), then combinations and others by name."""
    return (PAPER_METHODS.index(method), "") if method in PAPER_METHODS else (len(PAPER_METHODS), method)


def paper_accuracy(dataset: str, num_tasks: int, method: str) -> float | None:
    """Table 1's average accuracy (%) for a mergan dataset name, or None where the paper has none."""
    name = paper_dataset(dataset)
    return TABLE1.get(name or "", {}).get(num_tasks, {}).get(method)
