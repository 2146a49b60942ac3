"""``main.py train``: both stages end to end on the tiny backend, the output loads in ``generate``, errors exit 2."""

import json

import pytest

import main

FAST = [
    "--data",
    "procedural",
    "--scenes",
    "1",
    "--height",
    "32",
    "--width",
    "32",
    "--steps",
    "2",
    "--lr",
    "1e-3",
    "--device",
    "cpu",
]


def run(argv, capsys):
    code = main.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_two_stages_then_generate_with_the_weights(tmp_path, capsys):
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    code, out, err = run(["train", "--stage", "branch", "--out", str(stage1), *FAST], capsys)
    assert code == 0, err
    assert "trained branch steps 0..2" in out
    manifest = json.loads((stage1 / "memory_weights.json").read_text())
    assert manifest["lora"] is None and manifest["branch"]["layers"] == [0]  # default tiny: 4 blocks, every 4th
    assert (stage1 / "loss.csv").read_text().splitlines()[0] == "step,loss,lr"
    code, out, err = run(
        [
            "train",
            "--stage",
            "lora",
            "--out",
            str(stage2),
            "--branch",
            str(stage1),
            "--cache-dir",
            str(stage1 / "cache"),
            *FAST,
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads((stage2 / "memory_weights.json").read_text())["lora"]["rank"] == 64
    assert json.loads((stage2 / "train.json").read_text())["config"]["lr"] == 1e-3
    video = tmp_path / "branch.mp4"
    code, out, err = run(
        [
            "generate",
            "--backend",
            "tiny",
            "--out",
            str(video),
            "--mode",
            "branch",
            "--memory-weights",
            str(stage2),
            "--height",
            "64",
            "--width",
            "128",
            "--steps",
            "1",
            "--segments",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    assert video.stat().st_size > 0 and json.loads(video.with_suffix(".json").read_text())["model"]["branch"] is True


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stage", "lora"], "--stage lora needs --branch"),
        (["--stage", "branch", "--branch", "somewhere"], "--branch is only for --stage lora"),
        (["--stage", "branch", "--steps", "0"], "--steps must be >= 1"),
        (["--stage", "branch", "--branch-layers", "0,x"], "--branch-layers"),
        (["--stage", "branch", "--resume", "nowhere"], "--resume nowhere: no checkpoint"),
        (["--stage", "branch", "--height", "30"], "multiples of 8"),
        (["--stage", "lora", "--branch", "nowhere"], "nowhere/memory_branch.safetensors"),
        (["--stage", "branch", "--hole-weight", "0"], "--hole-weight must be positive"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(tmp_path, capsys, extra, message):
    argv = ["train", "--out", str(tmp_path / "out"), *FAST, *extra]
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err


def test_missing_data_folder_and_occupied_output(tmp_path, capsys):
    code, _, err = run(
        [
            "train",
            "--stage",
            "branch",
            "--data",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert code == 2 and "not a folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(
        [
            "train",
            "--stage",
            "branch",
            "--data",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert code == 2 and "no usable training clips" in err
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "train.json").write_text("{}")
    code, _, err = run(["train", "--stage", "branch", "--out", str(tmp_path / "used"), *FAST[:2]], capsys)
    assert code == 2 and "already holds a training run" in err
    with pytest.raises(SystemExit) as exit_info:
        main.main(["train", "--data", "procedural", "--out", str(tmp_path / "x")])  # no --stage
    assert exit_info.value.code == 2
