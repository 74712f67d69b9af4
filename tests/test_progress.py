"""Progress that reads well in a log file as on a terminal."""

import io
import sys

import pytest

from vqvid import progress
from vqvid.progress import Counter, on_terminal


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_counter_prints_whole_lines_at_each_tenth_in_a_log():
    log = io.StringIO()
    with Counter("prepare", 25, "clips", stream=log) as counter:
        for _ in range(25):
            counter.update()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split(" (")[0] for line in lines] == [f"prepare: {done}/25 clips"
                                                       for done in (3, 5, 8, 10, 13, 15, 18, 20, 23, 25)]


def test_a_resumed_count_does_not_repeat_the_tenths_it_passed():
    log = io.StringIO()
    counter = Counter("extract codes", 100, initial=50, stream=log)
    counter.update(25)
    counter.update(25)
    assert [line.split(" (")[0] for line in log.getvalue().splitlines()] == ["extract codes: 75/100",
                                                                             "extract codes: 100/100"]


def test_a_count_with_nothing_to_do_still_says_so_once():
    for total, initial in ((0, 0), (8, 8)):  # nothing at all; a resumed count already at its end
        log = io.StringIO()
        with Counter("extract codes", total, "clips", initial=initial, stream=log):
            pass
        assert log.getvalue() == f"extract codes: {initial}/{total} clips\n"


def test_a_rate_shows_only_once_a_second_has_passed(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    log = io.StringIO()
    counter = Counter("coding", 3, "chunks", stream=log)
    for now[0] in (0.001, 0.5, 2.0):
        counter.update()
    assert log.getvalue().splitlines() == ["coding: 1/3 chunks", "coding: 2/3 chunks", "coding: 3/3 chunks (1.5/s)"]


def test_a_terminal_is_redrawn_at_most_every_tenth_of_a_second_and_ends_on_the_last_count(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    terminal = Terminal()
    counter = Counter("sampling", 1000, "codes", stream=terminal)
    for k in range(1, 100):  # ninety-nine updates in 0.99 s
        now[0] = 0.01 * k
        counter.update()
    counter.close()
    draws = terminal.getvalue().split("\r")[1:]
    assert len(draws) == 11  # at 0.01 s, then every tenth of a second, and the last count when closed
    assert draws[-1].startswith("sampling: 99/1000 codes") and draws[-1].endswith("\n")


def test_a_counter_redraws_one_line_on_a_terminal():
    terminal = Terminal()
    with Counter("coding", 3, "chunks", stream=terminal) as counter:
        for _ in range(3):
            counter.update()
    text = terminal.getvalue()
    assert text.count("\r") >= 2 and text.endswith("\n") and text.count("\n") == 1
    assert text.split("\r")[-1].startswith("coding: 3/3 chunks")


def test_a_counter_not_enabled_prints_nothing_but_still_counts():
    for stream in (Terminal(), io.StringIO()):
        with Counter("prepare", 4, stream=stream, enabled=False) as counter:
            counter.update(4)
        assert stream.getvalue() == "" and counter.done == 4


def test_only_a_terminal_counts_as_one():
    assert on_terminal(Terminal()) and not on_terminal(io.StringIO())
    closed = io.StringIO()
    closed.close()  # its isatty() raises
    assert not on_terminal(closed)


def test_training_in_a_log_prints_steps_and_validations_as_lines(tmp_path, capsys):
    pytest.importorskip("lightning")
    from tests.training.test_prior_training import _code_store
    from vqvid.commands import train

    codes, val = _code_store(tmp_path / "codes", False, clips=4), _code_store(tmp_path / "val", False, 1, 4)
    argv = ["prior", "--level", "top", "--codes", str(codes), "--val-codes", str(val), "--out", str(tmp_path / "run"),
            "--max-steps", "40", "train.val_every=20", "train.log_every=1", "train.batch_size=4",
            "train.val_batches=1", "train.logger=csv"]
    with pytest.warns(UserWarning, match="holds no codebooks"):
        assert train.main(argv) == 0
    err = capsys.readouterr().err  # pytest's capture is no terminal, as a log file is not
    assert "\r" not in err
    steps = [line.split()[1] for line in err.splitlines() if line.startswith("step ")]
    assert steps == [f"{step}/40" for step in (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36,
                                               38, 40)]
    assert "bits " in err and "steps/s" in err
    validations = [line for line in err.splitlines() if line.startswith("validation at step")]
    assert [line.split(":")[0] for line in validations] == ["validation at step 20", "validation at step 40"]
    assert all("val/bits_per_code" in line for line in validations)


@pytest.mark.parametrize(("stdout", "stderr", "bar"), [(True, True, True), (False, True, False),
                                                      (True, False, False)])
def test_training_shows_a_bar_only_where_both_streams_are_terminals(monkeypatch, tmp_path, stdout, stderr, bar):
    from lightning.pytorch.callbacks import TQDMProgressBar

    from vqvid.training import runner
    from vqvid.training.config import TrainConfig

    # Lightning's bar writes to stdout, the lines to stderr: a log of either must not fill with redraws
    monkeypatch.setattr(runner, "on_terminal", lambda stream: {sys.stdout: stdout, sys.stderr: stderr}[stream])
    trainer = runner.build_trainer(TrainConfig(max_steps=10, logger="csv"), tmp_path)
    kinds = {type(callback) for callback in trainer.callbacks}
    assert (TQDMProgressBar in kinds, runner.StepLines in kinds) == (bar, not bar)
