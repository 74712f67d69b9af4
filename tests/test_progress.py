"""Progress that reads well in a log file as on a terminal."""

import io

import pytest

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


def test_a_counter_redraws_one_line_on_a_terminal():
    terminal = Terminal()
    with Counter("coding", 3, "chunks", stream=terminal) as counter:
        for _ in range(3):
            counter.update()
    text = terminal.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
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
