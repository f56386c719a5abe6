"""`qlorafx train` on several processes and machines: the options checked before anything starts, the
torchrun arguments they become, and the command each process runs (the launch options left out,
everything else kept)."""

from __future__ import annotations

import pytest

from qlorafx.cli import launch
from qlorafx.cli.main import build_parser, parse
from qlorafx.errors import UserError

LAUNCH_OPTIONS = {"--nproc", "--nnodes", "--node-rank", "--master-addr", "--master-port", "--rdzv-endpoint", "--rdzv-id"}


def test_each_process_runs_the_same_command_without_the_launch_options():
    argv = ["train", "r.yaml", "lora.r=8", "--overwrite", "--nproc", "2", "--nnodes", "2", "--node-rank", "1",
            "--master-addr", "10.0.0.1", "--master-port", "29555", "optimizer.lr=1e-3"]
    args = parse(argv)
    worker = launch.worker_arguments(args)
    assert worker == ["train", "r.yaml", "lora.r=8", "optimizer.lr=1e-3", "--overwrite"]
    again = vars(parse(worker))
    assert {k: v for k, v in again.items() if k not in ("run",)} == \
        {**{k: v for k, v in vars(args).items() if k != "run"}, "nproc": 1, "nnodes": 1, "node_rank": None,
         "master_addr": None, "master_port": None}


def test_every_train_option_is_a_launch_option_or_passed_on():
    """A new option of `qlorafx train` must reach the processes: worker_arguments has to learn it."""
    [train] = [a for a in build_parser()._actions if hasattr(a, "choices") and a.choices and "train" in a.choices]
    options = {flag for action in train.choices["train"]._actions for flag in action.option_strings if flag != "-h"}
    passed = {"--overwrite", "--force", "--resume"}
    assert options - {"--help"} == LAUNCH_OPTIONS | passed
    args = parse(["train", "r.yaml", "--force", "--resume", "runs/x/checkpoints/checkpoint-4", "a.b=1"])
    assert launch.worker_arguments(args) == ["train", "r.yaml", "a.b=1", "--force", "--resume",
                                             "runs/x/checkpoints/checkpoint-4"]


@pytest.mark.parametrize("argv, expected", [
    (["--nproc", "4"], ["--nnodes=1", "--standalone", "--nproc-per-node=4"]),
    (["--nnodes", "2", "--node-rank", "1", "--master-addr", "h0"],
     ["--nnodes=2", "--node-rank=1", "--master-addr=h0", "--master-port=29500", "--nproc-per-node=1"]),
    (["--nproc", "2", "--nnodes", "3", "--rdzv-endpoint", "h0:29400", "--rdzv-id", "job7"],
     ["--nnodes=3", "--rdzv-backend=c10d", "--rdzv-endpoint=h0:29400", "--rdzv-id=job7", "--nproc-per-node=2"]),
])
def test_torchrun_arguments(argv, expected):
    args = parse(["train", "r.yaml", *argv])
    launch.check(args)
    torchrun = launch.torchrun_arguments(args)
    assert torchrun[:len(expected)] == expected
    assert torchrun[len(expected):] == [f"--shutdown-timeout={launch.SHUTDOWN_TIMEOUT_S}", "-m", "qlorafx.cli.main",
                                        "train", "r.yaml"]


@pytest.mark.parametrize("argv, message", [
    (["--nnodes", "2"], "--nnodes 2: say where this machine stands: --node-rank (0 to 1) and --master-addr"),
    (["--nnodes", "2", "--node-rank", "2", "--master-addr", "h0"], "--node-rank 2: machines are numbered 0 to 1"),
    (["--nnodes", "2", "--rdzv-endpoint", "h0:1", "--node-rank", "0"], "--rdzv-endpoint assigns machine ranks itself"),
    (["--node-rank", "1"], "--node-rank, --master-addr, --master-port and --rdzv-endpoint place this machine among "
                           "several: give --nnodes N"),
])
def test_launch_options_that_cannot_work_are_refused_before_anything_starts(argv, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        launch.check(parse(["train", "r.yaml", *argv]))


def test_a_refusal_is_exit_2_without_torch(tmp_path):
    from tests.cli.test_cli import heavy_modules_after
    from tests.train.tiny import tiny_recipe

    code, heavy = heavy_modules_after(["train", str(tiny_recipe(tmp_path)), "--nnodes", "2", "--node-rank", "0"])
    assert code == 2 and heavy == []


@pytest.mark.parametrize("codes, expected", [({0: 130, 1: 130}, 130), ({0: 2, 1: 2}, 2), ({0: 1, 1: -15}, 1),
                                             # torchrun's SIGTERM to the processes still running after one exited
                                             ({0: 2, 1: -15}, 2), ({0: 130, 1: -15, 2: 130}, 130),
                                             ({0: -15, 1: -15}, 1), ({0: 2, 1: -9}, 1)])
def test_the_processes_exit_codes_are_the_command_s(codes, expected, capsys):
    assert launch._outcome(codes) == expected
    assert ("a training process failed (rank 0: " in capsys.readouterr().err) == (expected == 1)


@pytest.mark.parametrize("argv, message", [
    (["--master-port", "70000"], "argument --master-port: expected a port from 1 to 65535, got 70000"),
    (["--master-port", "0"], "argument --master-port: expected a port from 1 to 65535, got 0"),
    (["--rdzv-endpoint", "h0:abc"], "argument --rdzv-endpoint: expected a port number, got 'abc'"),
    (["--rdzv-endpoint", "h0:99999"], "argument --rdzv-endpoint: expected a port from 1 to 65535, got 99999"),
    (["--rdzv-endpoint", ":29400"], "argument --rdzv-endpoint: expected HOST:PORT, got ':29400'"),
])
def test_a_port_out_of_range_is_refused_by_the_command_not_by_torchrun_s_traceback(tmp_path, argv, message):
    """torchrun checks ports only once its agent starts: a traceback and exit 1 after torch was imported."""
    from tests.cli.test_cli import qlorafx
    from tests.train.tiny import tiny_recipe

    recipe = tiny_recipe(tmp_path)
    done = qlorafx("train", recipe, "--nnodes", "2", "--node-rank", "0", "--master-addr", "127.0.0.1", *argv) \
        if argv[0] == "--master-port" else qlorafx("train", recipe, "--nnodes", "2", *argv)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr[-800:]


@pytest.mark.parametrize("endpoint", ["h0:29400", "h0", "[::1]:29400", "10.0.0.1:1"])
def test_a_rendezvous_endpoint_with_or_without_its_port_is_taken(endpoint):
    assert parse(["train", "r.yaml", "--nnodes", "2", "--rdzv-endpoint", endpoint]).rdzv_endpoint == endpoint


def test_a_torchrun_without_shutdown_timeout_still_launches(monkeypatch):
    """torchrun took --shutdown-timeout only from torch 2.12 (pytorch#172596); qlorafx takes torch 2.3 on, whose
    torchrun refused the unknown option (exit 2 with torchrun's usage) and so every --nproc/--nnodes run. The
    launch goes through torchrun's own parser, here one without the option, as older versions have."""
    import torch.distributed.run as torchrun

    newer = torchrun.get_args_parser

    def older():
        parser = newer()
        for flag in ("--shutdown-timeout", "--shutdown_timeout"):
            action = parser._option_string_actions.pop(flag, None)
            if action in parser._actions:
                parser._actions.remove(action)
        return parser

    launched = []
    monkeypatch.setattr(torchrun, "get_args_parser", older)
    monkeypatch.setattr(torchrun, "run", launched.append)
    assert launch.launch(parse(["train", "r.yaml", "--nproc", "2"])) == 0
    [config] = launched
    assert config.nproc_per_node == "2" and config.training_script_args == ["train", "r.yaml"]
    assert not hasattr(config, "shutdown_timeout")

    monkeypatch.setattr(torchrun, "get_args_parser", newer)  # this torch's: the processes get 600 s to save
    assert launch.launch(parse(["train", "r.yaml", "--nproc", "2"])) == 0
    assert int(launched[1].shutdown_timeout) == launch.SHUTDOWN_TIMEOUT_S
