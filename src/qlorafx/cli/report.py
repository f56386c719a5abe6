"""qlorafx report RUN_DIR: (re)write a finished run's curves.png and README.md model card."""


def add_parser(commands) -> None:
    parser = commands.add_parser("report", help="write a finished run's loss plot and model card (README.md)")
    parser.add_argument("run_dir", help="the output_dir of a finished qlorafx train run")
    parser.set_defaults(run=run)


def run(args) -> int:
    from qlorafx.report import write_report

    report = write_report(args.run_dir)
    print(f"wrote {report.card}")
    print(f"wrote {report.plot}" if report.plot else "no plot: the run kept no metrics.jsonl")
    return 0
