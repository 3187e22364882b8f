#!/usr/bin/env python3
"""Run a hyperparameter sweep of MeRGAN trials on Ray Tune, searched by Optuna, logged to MLflow.

With no flags: the main job on the embedded default. Four baselines (SFT, JTR, RA, JTR+RA) and two
searched trials of the ``methods`` space on the embedded MNIST digits (mnist5k, preset small, tasks
"0|1|2", 300 iterations per task), two trials at a time, one CPU each: about 10 minutes on a 2-core
laptop; the table shows SFT forgetting and JTR/RA remembering. Examples::

    python sweep.py                                             # the main job
    python sweep.py --space ra-lambda --num-samples 12 --scheduler asha
    python sweep.py --space mergan --objective multi --set iterations_per_task=400
    python sweep.py --space ra-schedule --scheduler pbt --tasks '0|1|2|3|4'   # lambda_RA schedules (PBT)
    python sweep.py --space my_space.py --dry-run               # print the plan and stop
    python sweep.py --resume --name methods-20260101-120000     # after the driver died
    python sweep.py --address auto --storage-path /shared/sweeps --gpus-per-trial 0.25   # on a cluster

Ray: a local one on this machine's cores, unless ``--address`` (``auto``: the cluster this node
belongs to) or ``RAY_ADDRESS`` (set by ``ray job submit``) names one.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from typing import Any

from mergan.provenance import mergan_import_problem
from mergan.settings import ConfigError
from search_spaces import SpaceError, preset_names
from trainables.plan import PlanError, SweepPlan, list_sweeps, make_plan
from trainables.ray_connection import keep_local_ray_on_loopback

# The main job's values where they differ from make_plan's (see the module docstring).
MAIN_JOB = {"space": "methods", "num_samples": 6, "max_concurrent": 2}
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sweep.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    what = parser.add_argument_group("what to search")
    what.add_argument("--space", help=f"a named space ({', '.join(preset_names())}) or a .py/.yaml file of "
                                      f"your own; a .py file runs as code (default: {MAIN_JOB['space']})")
    what.add_argument("--dataset", help="mnist5k (embedded, default), mnist, svhn, lsun, folder")
    what.add_argument("--tasks", help="the task stream, e.g. '0|1|2' or '0,1|2,3' (default for mnist5k: '0|1|2')")
    what.add_argument("--preset", default="small", help="the config preset every trial starts from (default: small)")
    what.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                      help="a config value every trial gets (repeatable), e.g. --set iterations_per_task=400")
    what.add_argument("--method-module", metavar="FILE|MODULE",
                      help="a method plugin of your own (a .py file or an importable module) whose methods the "
                           "space may name; every trial loads it, so on a cluster it must be on every node (an "
                           "installed plugin package needs no flag)")
    what.add_argument("--objective", default="acc",
                      help="acc: maximise stream_avg_acc (the final average accuracy) with TPE; multi: also "
                           "minimise forgetting and training time, with NSGA-II; quality: accuracy against CLoG's "
                           "average final FID (afq_fid_classifier), with NSGA-II; or metric:mode pairs (e.g. "
                           "fr_recall_classifier:min, aiq_fid_classifier:min)")
    what.add_argument("--seed", type=int, default=0, help="seeds the searcher on the driver and every trial's run.seed")
    how = parser.add_argument_group("how to run")
    how.add_argument("--num-samples", type=int,
                     help=f"trials an Optuna space runs (default {MAIN_JOB['num_samples']}); a grid runs each "
                          f"point this many times (default 1)")
    how.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as the resources fit; "
                                                        f"{MAIN_JOB['max_concurrent']} for the main job)")
    how.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default 1)")
    how.add_argument("--gpus-per-trial", type=float, default=0.0,
                     help="GPUs per trial; a fraction such as 0.25 puts four trials on one card (default 0)")
    how.add_argument("--scheduler", choices=["asha", "pbt"],
                     help="asha: stop weak trials early (in units of tasks); pbt: Population Based Training, after "
                          "each task the worst quarter of the population (--num-samples, default 4) copies a better "
                          "trial and perturbs its knobs (a schedule of e.g. lambda_RA over tasks)")
    how.add_argument("--grace-period", type=int, default=2,
                     help="tasks every trial runs before ASHA may stop it (>= 2)")
    how.add_argument("--max-failures", type=int, default=2, help="retries of a crashed trial from its last checkpoint")
    where = parser.add_argument_group("where")
    where.add_argument("--address", help="Ray cluster to join: 'auto' (this node's cluster) or host:port "
                                         "(default: start a local Ray)")
    where.add_argument("--storage-path", help="Tune's results and checkpoints (shared storage on a cluster: an "
                                              "NFS/EFS path or s3://bucket/path; default ./runs/sweeps)")
    where.add_argument("--optuna-storage", help="the Optuna study's RDB URL (default: sqlite:///<storage>/<name>/optuna.db)")
    where.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    where.add_argument("--experiment", help="MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else mergan)")
    where.add_argument("--name", help="the sweep's name: its folder, study and MLflow run (default: <space>-<time>)")
    where.add_argument("--resume", action="store_true",
                       help="continue the sweep --name (default: the latest in --storage-path) after its driver "
                            "stopped; its settings come from the plan it saved")
    where.add_argument("--stop", action="store_true",
                       help="stop the sweep --name (default: the latest in --storage-path) that runs on this machine, "
                            "as Ctrl-C in its terminal would (its state is saved for --resume), and end the Ray "
                            "processes it started")
    where.add_argument("--dry-run", action="store_true", help="print the resolved plan and stop")
    where.add_argument("--verbose", type=int, nargs="?", const=2, default=0, choices=[0, 1, 2], metavar="LEVEL",
                       help="Ray's and Tune's own output besides the sweep's rows at task boundaries: --verbose "
                            "for all of it (Tune's status table every 30 s, every worker's output); 1: the table "
                            "and Ray's logs (default 0: none)")
    args = parser.parse_args(argv)
    if args.stop and args.resume:
        parser.error("--stop and --resume: give one (stop the sweep first, then resume it)")
    for name, value in vars(args).items():  # an empty value is not 'the default': leave the flag out for that
        if isinstance(value, str) and not value.strip():
            parser.error(f"--{name.replace('_', '-')}: empty; give a value, or leave the flag out for the default")
    return args


def given_or(value: Any, default: Any) -> Any:
    """``value`` unless the flag was left out (None): 0 is a value, not 'the default'."""
    return default if value is None else value


def plan_from_args(args: argparse.Namespace) -> SweepPlan:
    if args.resume or args.stop:
        flag = "--resume" if args.resume else "--stop"
        storage = given_or(args.storage_path, os.path.join(os.getcwd(), "runs", "sweeps"))
        storage = storage if "://" in storage else os.path.abspath(os.path.expanduser(storage))
        name = given_or(args.name, next(iter(list_sweeps(storage)), None))
        if name is None:
            raise PlanError(f"{flag}: no sweep in {storage}")
        plan = SweepPlan.load(storage, name)
        plan.storage_path = storage  # the same storage, perhaps reached by another path (a cluster mount)
        return plan
    main_job = args.space is None
    plan = make_plan(
        space=given_or(args.space, MAIN_JOB["space"]), preset=args.preset, dataset=args.dataset, tasks=args.tasks,
        sets=[*args.sets, *([f"method.module={args.method_module}"] if args.method_module else [])],
        num_samples=given_or(args.num_samples, MAIN_JOB["num_samples"] if main_job else None),
        max_concurrent=given_or(args.max_concurrent, MAIN_JOB["max_concurrent"] if main_job else None),
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, objective=args.objective,
        scheduler=args.scheduler, grace_period=args.grace_period, seed=args.seed, max_failures=args.max_failures,
        storage_path=args.storage_path, optuna_storage=args.optuna_storage, tracking_uri=args.tracking_uri,
        experiment=args.experiment, name=args.name)
    from trainables.plan import PLAN_FILE, read_text

    try:
        read_text(plan.plan_path)
    except FileNotFoundError:
        return plan
    raise PlanError(f"--name {plan.name!r}: a sweep of that name exists in {plan.storage_path} ({PLAN_FILE}); "
                    f"continue it with --resume --name {plan.name}, or choose another --name")


def describe(plan: SweepPlan) -> str:
    """The plan as a person reads it (what --dry-run prints)."""
    space = plan.load_space()
    from search_spaces import sample_points

    lines = [f"sweep {plan.name}: {plan.question}",
             (f"  space: {plan.space} ({space.kind}"
              f"{', ' + str(space.grid_size()) + ' grid points' if space.grid else ''})"),
             (f"  trials: {plan.num_samples}{' per grid point' if space.grid else ''}, at most "
              f"{plan.max_concurrent or 'as many as fit'} at once, {plan.cpus_per_trial:g} CPU and "
              f"{plan.gpus_per_trial:g} GPU each, up to {plan.max_failures} retries from the last checkpoint"),
             f"  objective: {', '.join(f'{m} ({mode})' for m, mode in plan.objective)}"
             + ("" if space.grid or plan.scheduler == "pbt"
                else f"; sampler {'TPE' if len(plan.objective) == 1 else 'NSGA-II'}, seed {plan.seed}"),
             f"  scheduler: {scheduler_text(plan)}",
             (f"  every trial: preset {plan.preset}, {json.dumps({**plan.defaults, **plan.fixed})}, "
              f"{plan.num_tasks or '?'} tasks"),
             f"  storage: {plan.experiment_path}"
             + (f"; Optuna study {plan.optuna_storage}" if plan.optuna_storage else ""),
             f"  MLflow: {plan.tracking_uri}, experiment {plan.experiment!r}",
             "  first trial configurations:"]
    for point in sample_points(space, count=3, seed=plan.seed)[:6]:
        lines.append(f"    {json.dumps(point)}")
    return "\n".join(lines)


def scheduler_text(plan: SweepPlan) -> str:
    if plan.scheduler == "pbt":
        from trainables import pbt

        knobs = ", ".join(k.name for k in pbt.space_knobs(plan.load_space(), plan.seed)[0])
        return (f"PBT at every task boundary: the worst {pbt.QUANTILE_FRACTION:.0%} of {plan.num_samples} copy a "
                f"better trial and perturb {knobs}; initial population drawn by Tune, seed {plan.seed}; trials "
                f"beyond the free CPUs wait, paused, at each boundary (--max-concurrent does not apply)")
    return f"ASHA by tasks, grace period {plan.grace_period}" if plan.scheduler else "none"


def print_outcome(outcome: Any, plan: SweepPlan, seconds: float) -> None:
    from trainables.results import format_table, trial_labeller
    from trainables.sweep_mlflow import mlflow_hint

    labeller = trial_labeller(plan)

    print(f"\nSweep {plan.name}: {len(outcome.rows)} trials in {seconds / 60:.1f} min. {plan.question}\n")
    print(format_table(outcome.rows, plan))
    if not outcome.best:
        print("\nNo trial finished with its objective measured.")
    elif len(plan.objective) == 1:
        best = outcome.best[0]
        metrics = ", ".join(f"{m} {best.value(m):.3f}" for m in plan.metrics)
        print(f"\nBest: {best.trial_id} ({labeller.label(best.params).name}): {metrics}")
        if plan.scheduler == "pbt":
            from trainables.pbt import format_schedule, winning_schedule

            schedule = winning_schedule(plan.tracking_uri, plan.parent_run_id, best.trial_id)
            if schedule:
                print(f"Its schedule (the knobs each task of its final weights was trained with):\n"
                      f"{format_schedule(schedule)}")
    else:
        print(f"\nPareto front ({', '.join(f'{m} {mode}' for m, mode in plan.objective)}):")
        for row in outcome.best:
            print(f"  {row.trial_id} ({labeller.label(row.params).name}): "
                  + ", ".join(f"{m} {row.value(m):.3g}" for m in plan.metrics))
    print()
    print(mlflow_hint(plan))


def resume_command(args: argparse.Namespace, plan: SweepPlan) -> str:
    """The command that continues this sweep: its name, its storage, the same cluster."""
    words = ["python", "sweep.py", "--resume", "--name", plan.name, "--storage-path", plan.storage_path]
    if args.address:
        words += ["--address", args.address]
    return shlex.join(words)


def stop(args: argparse.Namespace, plan: SweepPlan) -> int:
    """``--stop``: stop the sweep's driver on this machine and end the processes it left running."""
    from trainables.sweep_driver import stop_sweep

    report = stop_sweep(plan)
    if report.driver_stopped:
        print(f"sweep.py: stopped the driver of sweep {plan.name}; its state is saved for --resume")
    for process in report.ended:
        print(f"sweep.py: ended process {process}, left running by sweep {plan.name}")
    if not report.driver_stopped and not report.ended:
        print(f"sweep.py: sweep {plan.name} has no driver and no processes running on this machine")
    print(f"continue with: {resume_command(args, plan)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keep_local_ray_on_loopback(args.address)  # before anything imports Ray
    problem = mergan_import_problem()
    if problem:
        print(f"sweep.py: error: {problem}", file=sys.stderr)
        return 2
    from tracking.store import TrackingServerError, check_tracking_server

    try:
        plan = plan_from_args(args)
        if args.dry_run:
            print(describe(plan))
            return 0
        if args.stop:
            return stop(args, plan)
        check_tracking_server(plan.tracking_uri)  # before Ray starts: a server refusing the sweep stops it
        from trainables.ray_connection import connect_ray
        from trainables.sweep_driver import end_leftovers, mark_driver

        if args.resume:
            for process in end_leftovers(plan):
                print(f"sweep.py: ended process {process}, left running by the sweep's killed driver", file=sys.stderr)
        driver = mark_driver(plan)  # before Ray starts: its processes inherit the driver's token
        where = connect_ray(args.address, plan, args.verbose)
        driver.save(plan)
    except (PlanError, SpaceError, ConfigError, TrackingServerError) as error:
        print(f"sweep.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nsweep.py: stopped by Ctrl-C before any trial started", file=sys.stderr)
        return EXIT_INTERRUPTED
    from analysis.report import build_report
    from trainables.sweeping import run_sweep

    print(("Resuming" if args.resume else "Starting") + f" on {where}:\n{describe(plan)}\n", flush=True)
    started = time.perf_counter()
    try:
        outcome = run_sweep(plan, resume=args.resume, verbose=args.verbose, build_report=build_report)
    except KeyboardInterrupt:  # before Tune ran, or a second Ctrl-C (Tune's state as it last saved it)
        from ray import tune

        if tune.Tuner.can_restore(plan.experiment_path):
            print(f"\nsweep.py: stopped by Ctrl-C; continue with: {resume_command(args, plan)}", file=sys.stderr)
        else:
            print("\nsweep.py: stopped by Ctrl-C before any trial started; start it again", file=sys.stderr)
        return EXIT_INTERRUPTED
    if outcome.interrupted:
        finished = sum(row.complete for row in outcome.rows)
        print(f"\nsweep.py: stopped by Ctrl-C after {(time.perf_counter() - started) / 60:.1f} min with {finished} "
              f"trial(s) finished; Tune saved the sweep's state in {plan.experiment_path}; continue with: "
              f"{resume_command(args, plan)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print_outcome(outcome, plan, time.perf_counter() - started)
    return 0 if all(row.status != "error" for row in outcome.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
