"""qlorafx env: versions, devices and whether 4-bit works here; paste it into a bug report."""


def add_parser(commands) -> None:
    parser = commands.add_parser("env", help="versions, devices, and whether 4-bit quantization works here")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def format_report(found: dict) -> str:
    lines = [f"{name}: {version or 'not installed'}" for name, version in found["versions"].items()]
    lines.append(f"platform: {found['platform']}")
    lines += ["devices:", *(f"  {d}" for d in found["devices"])]
    check = found["4bit"]
    lines.append(f"4-bit on {check['device']}: {'ok' if check['ok'] else 'FAILED'}: {check['detail']}")
    return "\n".join(lines)


def run(args) -> int:
    import json

    from qlorafx.train.quiet import quiet_libraries

    quiet_libraries()
    from qlorafx.environment import report

    found = report()
    print(json.dumps(found, indent=2) if args.json else format_report(found))
    return 0 if found["4bit"]["ok"] else 1
