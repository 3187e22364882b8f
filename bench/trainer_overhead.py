"""The trainer's overhead over a bare hand-written loop doing the same work.

Both run SFT steps of the same networks on the same real batches: ``critic_steps`` critic
updates (WGAN-GP + auxiliary class loss) and one generator update per iteration. The bare loop
is what one would write by hand with no hooks, callbacks or loss bookkeeping. Rounds alternate
(bare, trainer, bare, trainer ...) so that load on the machine hits both alike; the best round
of each is compared. Writes bench/results/trainer_overhead.json.

    python bench/trainer_overhead.py [--preset small] [--device auto] [--iterations 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mergan.presets import build_config
from mergan.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"


def bare_loop(trainer: Trainer, iterations: int) -> None:
    """The same SFT work, written by hand: no hooks, no callbacks, no loss bookkeeping."""
    cfg = trainer.config.optim
    generator, critic, device, z_dim = trainer.generator, trainer.critic, trainer.device, trainer.config.model.z_dim
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    images = trainer.train_set
    members = torch.isin(images.labels, torch.tensor(trainer.tasks[0])).nonzero().squeeze(1).to(device)
    all_labels = images.labels.to(device)
    for _ in range(iterations):
        critic.requires_grad_(True)
        for _ in range(cfg.critic_steps):
            idx = members[torch.randint(members.shape[0], (cfg.batch_size,), device=device)]
            real, labels = images.get(idx), all_labels[idx]
            z = torch.randn(cfg.batch_size, z_dim, device=device)
            with torch.no_grad():
                fake = generator(z, labels)
            score, logits = critic(torch.cat([real, fake]))
            alpha = torch.rand(cfg.batch_size, 1, 1, 1, device=device)
            mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(critic(mixed)[0].sum(), mixed, create_graph=True)
            gp = ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
            loss_d = (score[cfg.batch_size:].mean() - score[:cfg.batch_size].mean() + cfg.lambda_gp * gp
                      + cfg.lambda_cls * F.cross_entropy(logits[:cfg.batch_size], labels))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        critic.requires_grad_(False)
        labels = all_labels[members[torch.randint(members.shape[0], (cfg.batch_size,), device=device)]]
        z = torch.randn(cfg.batch_size, z_dim, device=device)
        score, logits = critic(generator(z, labels))
        loss_g = -score.mean() + cfg.lambda_cls * F.cross_entropy(logits, labels)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    critic.requires_grad_(True)


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", default=str(RESULTS / "trainer_overhead.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = build_config(args.preset, dict(device=args.device, tasks="0", iterations_per_task=args.iterations,
                                            eval_when="none", save_checkpoints=False, log_every=50,
                                            out_dir="runs/bench_overhead"))
    trainer = Trainer(config)
    device = trainer.device
    bare_loop(trainer, 5)  # warm-up of both: allocator, kernels, cuDNN autotuning
    config.optim.iterations_per_task = 5
    trainer.run_task(0)
    config.optim.iterations_per_task = args.iterations
    bare_seconds, trainer_seconds = [], []
    for _ in range(args.rounds):
        bare_seconds.append(timed(lambda: bare_loop(trainer, args.iterations), device))
        trainer_seconds.append(timed(lambda: trainer.run_task(0), device))
    bare_rate = args.iterations / min(bare_seconds)
    trainer_rate = args.iterations / min(trainer_seconds)
    result = {
        "preset": args.preset, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch_threads": torch.get_num_threads(), "iterations_per_round": args.iterations,
        "critic_steps": config.optim.critic_steps, "batch_size": config.optim.batch_size,
        "bare_steps_per_second": round(bare_rate, 3), "trainer_steps_per_second": round(trainer_rate, 3),
        "trainer_overhead": round(bare_rate / trainer_rate - 1, 4),
        "bare_round_seconds": [round(s, 3) for s in bare_seconds],
        "trainer_round_seconds": [round(s, 3) for s in trainer_seconds],
        "command": f"python bench/trainer_overhead.py --preset {args.preset} --device {args.device} "
                   f"--iterations {args.iterations} --rounds {args.rounds} --threads {args.threads}",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    path = Path(args.out)
    table = json.loads(path.read_text()) if path.exists() else {}
    table[f"{args.preset}/{device.type}"] = result
    path.write_text(json.dumps(table, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
