"""Checkpoint averaging: exact means, refusals that name the file, and a result the commands can load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import command

from seq2seq_lit.average import average_checkpoints, main
from seq2seq_lit.translator import DecodingConfig, Translator

SENTENCES = ["A man is riding a bicycle.", "", "Two dogs are playing in the snow."]


def test_average_command_writes_the_exact_mean(trained_ckpt: Path, scaled_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "avg.ckpt"
    result = command("average", ["-o", str(out), str(trained_ckpt), str(scaled_ckpt)])
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    original = torch.load(trained_ckpt, weights_only=True)
    averaged = torch.load(out, weights_only=True)  # tensors and plain types only
    assert set(averaged["state_dict"]) == set(original["state_dict"])
    for name, value in original["state_dict"].items():
        assert averaged["state_dict"][name].dtype == value.dtype
        assert torch.equal(averaged["state_dict"][name], 2 * value), name
    assert all(torch.equal(averaged["tokenizers"][s], original["tokenizers"][s]) for s in ("src", "tgt"))
    assert averaged["averaged_from"] == [str(trained_ckpt), str(scaled_ckpt)]
    assert "optimizer_states" not in averaged


def test_average_of_one_checkpoint_translates_as_it_does(trained_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "one.ckpt"
    main(["-o", str(out), str(trained_ckpt)])
    cfg = DecodingConfig(beam_size=3)
    expected = [h[0].text for h in Translator.from_checkpoint(trained_ckpt).translate(SENTENCES, cfg)]
    assert [h[0].text for h in Translator.from_checkpoint(out).translate(SENTENCES, cfg)] == expected
    stdin = "".join(s + "\n" for s in SENTENCES).encode()
    result = command("translate", [f"ckpt_path={out}", "beam_size=3"], stdin)
    assert result.returncode == 0 and result.stdout.decode().split("\n")[:-1] == expected


def test_average_refuses_another_architecture_naming_the_file(trained_ckpt: Path, tmp_path: Path) -> None:
    other = torch.load(trained_ckpt, weights_only=True)
    other["hyper_parameters"] = {**other["hyper_parameters"], "hidden_size": 64}
    path = tmp_path / "other.ckpt"
    torch.save(other, path)
    with pytest.raises(ValueError, match=r"other\.ckpt: differs from .* in model\.hidden_size \(64 there, 128 here\)"):
        average_checkpoints([trained_ckpt, path])
    # Same recorded config, a weight of another shape (a hand-edited or foreign file): named too.
    other = torch.load(trained_ckpt, weights_only=True)
    name = next(iter(other["state_dict"]))
    other["state_dict"][name] = torch.zeros(3)
    torch.save(other, path)
    with pytest.raises(ValueError, match=rf"other\.ckpt: differs from .* in the shape of {name}"):
        average_checkpoints([trained_ckpt, path])


def test_average_keeps_an_existing_output(trained_ckpt: Path, scaled_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "avg.ckpt"
    out.write_bytes(b"results of an earlier run")
    result = command("average", ["-o", str(out), str(trained_ckpt), str(scaled_ckpt)])
    assert result.returncode == 1
    assert f"error: {out} exists; pass --force" in result.stderr.decode()
    assert out.read_bytes() == b"results of an earlier run"
    missing = command("average", ["-o", str(tmp_path / "new.ckpt"), str(tmp_path / "nope.ckpt")])
    assert missing.returncode == 1 and "nope.ckpt: no such checkpoint file" in missing.stderr.decode()
    assert not (tmp_path / "new.ckpt").exists()
    assert command("average", ["--force", "-o", str(out), str(trained_ckpt), str(scaled_ckpt)]).returncode == 0
    assert torch.load(out, weights_only=True)["averaged_from"] == [str(trained_ckpt), str(scaled_ckpt)]
