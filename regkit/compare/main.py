"""``regkit compare``'s command line: parse its options, plan the grid, run it, write the report."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from regkit.cli.commands import TRAINER_SUBCOMMANDS, option_values
from regkit.compare.check import check_grid
from regkit.compare.grid import parse_seeds, parse_vary, plan_runs
from regkit.compare.results import choose_metrics, curve_metrics, markdown_table, plot, summarise, write_csv
from regkit.compare.runner import Runner, Stopped, fit_command, load_result, same_run
from regkit.compare.sweep import sweep_config

USAGE = """\
regkit compare --config RECIPE [--vary KEY=V1,V2 ...] [--seeds N] [options] [regkit fit options]

Runs RECIPE once per (setting, seed), each a `regkit fit` in its own run folder under --out, and
writes results.csv, summary.md and summary.png there. Options not listed below go to every run."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regkit compare", usage=USAGE, allow_abbrev=False,
        epilog="Example: regkit compare --config recipes/mlp_dropout.yaml "
        "--vary model.init_args.network.dropout.name=dropout,gaussian_dropout --seeds 3 --trainer.max_epochs 3",
    )
    parser.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                        help="values of one recipe key (repeat for a grid; null switches a slot off; "
                        "config=a.yaml,b.yaml lays a recipe file over the base recipe)")
    parser.add_argument("--seeds", default="3", help="N (seeds 0..N-1) or a list 0,5,7 (default 3)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time (default 1)")
    parser.add_argument("--out", help="output folder (default runs/compare/<recipe name>)")
    parser.add_argument("--metric", action="append", default=[],
                        help="metric(s) for the table, the first also for the picture (default: test/acc, "
                        "test/ppl or the FID, whichever the runs log)")
    parser.add_argument("--curve", action="append", default=[],
                        help="per-epoch metric(s) for the curves (default: the val/ twin of --metric)")
    parser.add_argument("--title", help="title of the picture and table")
    parser.add_argument("--wandb-sweep", metavar="FILE", help="write the grid as a W&B sweep file and stop")
    parser.add_argument("--dry-run", action="store_true", help="print the runs' commands and stop")
    parser.add_argument("--report", action="store_true",
                        help="only write results.csv, summary.md and summary.png from the finished runs")
    return parser


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """compare's own options, and the rest (passed to every ``regkit fit``)."""
    return build_parser().parse_known_args(argv)


def recipe_name(passthrough: list[str]) -> str:
    configs = option_values(passthrough, "--config")
    return Path(configs[0]).stem if configs else "recipe"


def main(argv: list[str], plugins: list[str] = []) -> int:
    """``regkit compare``; ``plugins``: the ``--plugins`` of regkit's command line, given to every run."""
    options, passthrough = parse_args(argv)
    if options.jobs < 1:
        raise SystemExit("regkit compare: --jobs must be >= 1")
    if any(a in TRAINER_SUBCOMMANDS for a in passthrough[:1]):
        passthrough = passthrough[1:]  # `regkit compare fit --config ...` reads the same
    grid = parse_vary(options.vary)
    seeds = parse_seeds(options.seeds)
    name = recipe_name(passthrough)
    out = Path(options.out or Path("runs", "compare", name))
    runs = plan_runs(grid, seeds, out)
    if not options.report:  # every setting parses, or nothing runs (nor is a sweep written)
        check_grid(runs, passthrough)
    if options.wandb_sweep:
        import yaml

        config = sweep_config(grid, seeds, passthrough, (options.metric or ["val/loss"])[0], name)
        Path(options.wandb_sweep).write_text(yaml.safe_dump(config, sort_keys=False))
        print(f"wrote {options.wandb_sweep}: {len(runs)} runs; start it with\n"
              f"  wandb sweep {options.wandb_sweep}    # prints the sweep id\n"
              f"  wandb agent ENTITY/PROJECT/SWEEP_ID  # on each machine, as often as you like")
        return 0
    if options.dry_run:
        for run in runs:
            print("regkit " + shlex.join(fit_command(run, passthrough, plugins)[3:]))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if options.report:
        for run in runs:
            result = load_result(run)
            run.result = result if same_run(result, run, passthrough) else {}
    else:
        runner = Runner(passthrough, options.jobs, plugins)
        try:
            with runner.stopped_by_sigterm():  # so that the runs stop as well
                runner.run_all(runs)
        except (KeyboardInterrupt, Stopped) as stop:
            finished = sum(load_result(run).get("status") == "ok" for run in runs)
            print(f"\nregkit compare: stopped with {finished} of {len(runs)} runs finished; the same command "
                  "continues (the unfinished runs start again from their beginning)", file=sys.stderr)
            return 143 if isinstance(stop, Stopped) else 130
    metrics = choose_metrics(runs, options.metric)
    summary = summarise(runs, metrics)
    title = options.title or f"regkit compare {name}: {len(summary)} settings x {len(seeds)} seeds"
    command = "regkit compare " + " ".join(argv)
    table = markdown_table(summary, metrics)
    (out / "summary.md").write_text(f"# {title}\n\n{table}\n\n`{command}`\n")
    write_csv(runs, out / "results.csv")
    (out / "results.json").write_text(json.dumps([run.result for run in runs if run.result], indent=1))
    if metrics:
        plot(runs, summary, metrics[0], curve_metrics(runs, metrics[0], options.curve), out / "summary.png", title)
    failed = [r for r in runs if r.result.get("status") != "ok"]
    print(f"\n{table}\n")
    print(f"{len(runs) - len(failed)}/{len(runs)} runs finished ({time.time() - started:.0f} s this time); "
          f"results in {out}/: results.csv, summary.md, summary.png, runs/")
    return 1 if failed else 0
