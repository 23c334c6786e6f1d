"""`rtfuse profile`: summarise and plot a latency report written by `rtfuse run --profile`."""

from __future__ import annotations

import argparse

HELP = "print a latency profile (from `rtfuse run --profile`) and optionally plot it"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("report", metavar="REPORT.json", help="a profile written by `rtfuse run --profile`")
    parser.add_argument("--plot", metavar="PNG", help="write a latency histogram + timeline")


def run(args: argparse.Namespace) -> int:
    from rtfuse.errors import spell
    from rtfuse.paths import check_output
    from rtfuse.profiling import load_report, plot, summary

    if args.plot:
        check_output(args.plot, inputs=(args.report,))
    report = load_report(args.report)
    print(spell(summary(report), {"backend": "rtfuse run --backend"}))
    if args.plot:
        plot(report, args.plot)
        print(f"plot written to {args.plot}")
    return 0
