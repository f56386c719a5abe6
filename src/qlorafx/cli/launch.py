"""`qlorafx train` on several processes and machines: torchrun's launcher, run in this process.

torchrun (torch.distributed.run, its elastic agent) starts the processes on this machine, meets the
other machines' agents at a rendezvous, forwards SIGTERM / SIGINT to its processes and waits for them
to save and stop; qlorafx only builds its arguments and reads the outcome back: the processes' own
exit codes (2 for a refusal, 130 for a signal they stopped on with a checkpoint), not torchrun's 1.
"""

from __future__ import annotations

import argparse
import signal
import sys

from qlorafx.errors import UserError

STOPPED = 130  # what `qlorafx train` exits with after a signal, its checkpoint saved
# torchrun waits this long for its processes to finish the step and save before killing them
SHUTDOWN_TIMEOUT_S = 600


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qlorafx.cli.common import count

    parser.add_argument("--nproc", type=count(1), default=1, metavar="N",
                        help="processes on this machine (torchrun; gloo on CPU, nccl on GPUs)")
    parser.add_argument("--nnodes", type=count(1), default=1, metavar="N", help="machines taking part (each runs this command)")
    parser.add_argument("--node-rank", type=count(0), default=None, metavar="R",
                        help="this machine's index, 0 to nnodes-1; machine 0 hosts the rendezvous at --master-addr")
    parser.add_argument("--master-addr", default=None, metavar="HOST", help="machine 0's address, reachable from all")
    parser.add_argument("--master-port", type=_port, default=None, metavar="PORT",
                        help="a free port on machine 0 (default 29500)")
    parser.add_argument("--rdzv-endpoint", type=_endpoint, default=None, metavar="HOST:PORT",
                        help="instead of --node-rank and --master-*: a c10d rendezvous; machine ranks are assigned")
    parser.add_argument("--rdzv-id", default="qlorafx", metavar="ID", help="with --rdzv-endpoint: the job's id, the same on every machine")


def _port(text: str) -> int:
    """An argparse type: a TCP port (torchrun's own check is a traceback once it has started)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {value}")
    return value


def _endpoint(text: str) -> str:
    """An argparse type: HOST or HOST:PORT (torchrun's default port 29400 when none), checked here for
    the same reason."""
    host, colon, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not colon:
        host, port = text, None
    if not host.strip("[]"):
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if port is not None:
        _port(port)
    return text


def wanted(args) -> bool:
    """Does this command start processes (rather than train in this one)?"""
    return args.nproc > 1 or args.nnodes > 1


def world_size(args) -> int:
    return args.nproc * args.nnodes


def hosts_the_run(args) -> bool:
    """The launcher that checks the output directory before starting: the one single-machine launcher, or
    machine 0's (with a c10d rendezvous no machine knows its rank beforehand: the processes check)."""
    return args.nnodes == 1 or (args.rdzv_endpoint is None and args.node_rank == 0)


def check(args) -> None:
    """The launch options, before anything starts."""
    static = any(v is not None for v in (args.node_rank, args.master_addr, args.master_port))
    if not wanted(args) and (static or args.rdzv_endpoint is not None):
        raise UserError("--node-rank, --master-addr, --master-port and --rdzv-endpoint place this machine among "
                        "several: give --nnodes N (and --nproc for more processes on this one), or leave them out")
    if args.rdzv_endpoint is not None and static:
        raise UserError("--rdzv-endpoint assigns machine ranks itself: give it, or --node-rank with --master-addr "
                        "and --master-port, not both")
    if args.nnodes > 1 and args.rdzv_endpoint is None:
        if args.node_rank is None or args.master_addr is None:
            raise UserError(f"--nnodes {args.nnodes}: say where this machine stands: --node-rank (0 to "
                            f"{args.nnodes - 1}) and --master-addr (machine 0's address, with --master-port), "
                            "or --rdzv-endpoint HOST:PORT on every machine")
        if not 0 <= args.node_rank < args.nnodes:
            raise UserError(f"--node-rank {args.node_rank}: machines are numbered 0 to {args.nnodes - 1}")


def torchrun_arguments(args, shutdown_timeout: bool = True) -> list[str]:
    """``shutdown_timeout``: whether this torchrun takes --shutdown-timeout (torch 2.12 on; before it, the
    processes get torchrun's fixed 30 s to save after a signal)."""
    if args.rdzv_endpoint is not None:
        where = ["--rdzv-backend=c10d", f"--rdzv-endpoint={args.rdzv_endpoint}", f"--rdzv-id={args.rdzv_id}"]
    elif args.nnodes == 1 and args.master_addr is None and args.master_port is None:
        where = ["--standalone"]  # a local rendezvous on a free port
    else:
        where = [f"--node-rank={args.node_rank or 0}", f"--master-addr={args.master_addr or '127.0.0.1'}",
                 f"--master-port={args.master_port or 29500}"]
    return [f"--nnodes={args.nnodes}", *where, f"--nproc-per-node={args.nproc}",
            *([f"--shutdown-timeout={SHUTDOWN_TIMEOUT_S}"] if shutdown_timeout else []),
            "-m", "qlorafx.cli.main", *worker_arguments(args)]


def worker_arguments(args) -> list[str]:
    """The same `qlorafx train` for each process, without the launch options."""
    argv = ["train", args.recipe, *args.overrides]
    argv += ["--overwrite"] * args.overwrite + ["--force"] * args.force
    if args.resume:  # last: its optional value must not swallow an override
        argv += ["--resume"] + ([args.resume] if isinstance(args.resume, str) else [])
    return argv


def launch(args) -> int:
    """torchrun in this process; the processes' exit code."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    parser = get_args_parser()
    # an older torch (qlorafx takes 2.3 on) has no --shutdown-timeout: its parser would refuse the whole launch
    knows_timeout = "--shutdown-timeout" in parser._option_string_actions
    try:
        run(parser.parse_args(torchrun_arguments(args, shutdown_timeout=knows_timeout)))
    except ChildFailedError as failed:
        return _outcome({rank: f.exitcode for rank, f in failed.failures.items()})
    except SignalException as signalled:  # this launcher was signalled; its processes have saved and stopped
        print(f"stopped: {signalled.sigval.name} to this machine's launcher; its processes have stopped",
              file=sys.stderr)
        return STOPPED
    return 0


def _outcome(codes: dict[int, int]) -> int:
    """The processes' own verdict: they printed why; a mix of codes is a crash somewhere. Once one process
    has exited, torchrun stops the others with SIGTERM: a process ended that way (-15) while the rest agree
    on a refusal or a stop had not finished saying the same (measured: every process refusing FSDP for T5,
    one was recorded as -15 and the command said 'a training process failed', exit 1)."""
    own = {code for code in codes.values() if code != -signal.SIGTERM}
    if own in ({STOPPED}, {2}):
        return next(iter(own))
    listing = ", ".join(f"rank {rank}: {code}" for rank, code in sorted(codes.items()))
    print(f"error: a training process failed ({listing}); its error is above", file=sys.stderr)
    return 1
