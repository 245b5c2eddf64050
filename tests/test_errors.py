"""User errors end a command with one line; real bugs keep their traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq_lit.errors import CheckpointError, ConfigError, DataError, exit_on_user_error


def test_user_errors_exit_with_one_line_and_bugs_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    for error in (ConfigError("model.x=1 is bad"), DataError("a.txt:3: bad"), CheckpointError("ckpt_path=c: bad")):
        with pytest.raises(SystemExit) as exited:
            exit_on_user_error(lambda error=error: (_ for _ in ()).throw(error))
        assert exited.value.code == f"error: {error}"

    def bug() -> None:
        raise ValueError("raised inside torch")

    with pytest.raises(ValueError, match="raised inside torch"):
        exit_on_user_error(bug)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError):
        exit_on_user_error(lambda: (_ for _ in ()).throw(ConfigError("shown with its traceback")))


BUG_IN_TRANSLATE = """
import sys
import seq2seq_lit.translator as translator

def broken(path, device="cpu", direction="src2tgt"):
    raise ValueError("a bug deep inside the loader")

translator.load_checkpoint = broken
from seq2seq_lit.translate import main
sys.argv = ["translate", "ckpt_path=whatever.ckpt"]
main()
"""


def test_a_real_bug_in_a_command_keeps_its_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    result = subprocess.run(
        [sys.executable, "-c", BUG_IN_TRANSLATE], input=b"A dog.\n", cwd=tmp_path, env=env, capture_output=True,
        timeout=120,
    )  # fmt: skip
    stderr = result.stderr.decode()
    assert result.returncode == 1
    assert "Traceback" in stderr and "a bug deep inside the loader" in stderr and "in broken" in stderr
    assert "error: a bug" not in stderr


def test_hydra_full_error_shows_the_traceback_of_a_user_error(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "seq2seq_lit.translate", f"ckpt_path={tmp_path / 'missing.ckpt'}"]
    plain = subprocess.run(args, input=b"", cwd=tmp_path, capture_output=True, timeout=120)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr.decode()
    assert plain.stderr.decode().strip().endswith("missing.ckpt: no such checkpoint file")
    full = subprocess.run(
        args, input=b"", cwd=tmp_path, capture_output=True, timeout=120, env={**os.environ, "HYDRA_FULL_ERROR": "1"}
    )
    stderr = full.stderr.decode()
    assert full.returncode == 1 and "Traceback" in stderr and "MissingFileError" in stderr


def test_a_missing_mandatory_key_names_it(tmp_path: Path) -> None:
    for command in ("translate", "evaluate"):
        result = subprocess.run(
            [sys.executable, "-m", f"seq2seq_lit.{command}"], input=b"", cwd=tmp_path, capture_output=True, timeout=120
        )
        assert result.returncode == 1, result.stderr.decode()
        assert "error: ckpt_path is required" in result.stderr.decode()
        assert "Traceback" not in result.stderr.decode()
