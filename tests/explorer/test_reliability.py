"""Issue 9 §2: every output of generate, walkthrough, record, eval and export is whole or absent.

A full disk is a small tmpfs when the tests run as root and mounting works; otherwise that variant is
skipped and the ``injected`` variant makes the same write fail (ffmpeg replaced by a script that fails
like a full disk, or a writer that raises ENOSPC). Signals and ``kill -9`` hit a real
``main.py generate`` subprocess; the recorder is killed in the middle of committing a segment.
"""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import numpy as np
import pytest

import explorer.evaluate
import explorer.generate
import explorer.walkthrough
import main
from explorer.session import SessionRecorder, load_session
from model.io.atomic import (
    Interrupted,
    OutputError,
    OutputSet,
    atomic_path,
    raise_on_signals,
    signals_held,
    sweep_orphans,
)
from tests.cli_args import TINY_FAST as FAST

REPO = Path(__file__).resolve().parents[2]
VARIANTS = ["tmpfs", "injected"]
NO_SPACE = os.strerror(errno.ENOSPC)


def run(argv, capsys):
    """``main.main(argv)`` -> (exit code, the ``error:`` line or None)."""
    code = main.main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) <= 1 and "Traceback" not in err, err
    return code, errors[0] if errors else None


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One good ``generate`` run with ``--save-memory``: {name: bytes} of run.mp4/.json/.cameras.txt and
    mem.safetensors.
    """
    folder = tmp_path_factory.mktemp("reference")
    assert (
        main.main(
            ["generate", "--out", str(folder / "run.mp4"), "--save-memory", str(folder / "mem.safetensors"), *FAST]
        )
        == 0
    )
    return snapshot(folder)


@pytest.fixture
def small_disk(tmp_path):
    """``make(size_bytes)`` -> a folder on a tmpfs of that size (skips unless root and mount works)."""
    mounted = []

    def make(size: int) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a small tmpfs needs root; the injected variant covers this case")
        folder = tmp_path / "disk"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the injected variant covers this case")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


def ffmpeg_that_fills_the_disk(tmp_path, monkeypatch):
    """Make every :class:`Mp4Writer` run a stand-in ffmpeg that reads all frames, then fails as on a full disk."""
    script = tmp_path / "ffmpeg-disk-full"
    script.write_text(
        "#!/bin/sh\ncat > /dev/null\necho '[out#0/mp4 @ 0x1] Error closing file: No space left on device' >&2\nexit "
        "228\n"
    )
    script.chmod(0o755)
    monkeypatch.setattr("imageio_ffmpeg.get_ffmpeg_exe", lambda: str(script))


def no_space(path, *args, **kwargs):
    """A writer that fails like a full disk."""
    raise OSError(errno.ENOSPC, NO_SPACE, str(path))


def page_rounded(n: int) -> int:
    return -(-n // 4096) * 4096


# ---- generate on a full disk ------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_full_disk_fresh_output_fails_naming_the_video_and_leaves_nothing(
    variant, tmp_path, small_disk, monkeypatch, capsys
):
    if variant == "tmpfs":
        folder = small_disk(64 * 1024)  # the 64x128 video alone is ~140 KiB
    else:
        folder = tmp_path / "out"
        folder.mkdir()
        ffmpeg_that_fills_the_disk(tmp_path, monkeypatch)
    code, error = run(
        ["generate", "--out", str(folder / "run.mp4"), "--save-memory", str(folder / "mem.safetensors"), *FAST], capsys
    )
    assert code == 2
    assert error.startswith(f"error: {folder / 'run.mp4'}: ffmpeg failed") and NO_SPACE in error, error
    assert os.listdir(folder) == [], "no final files and no temporaries"


@pytest.mark.parametrize("variant", VARIANTS)
def test_full_disk_rerun_keeps_the_earlier_result_byte_identical(
    variant, tmp_path, small_disk, monkeypatch, capsys, reference
):
    if variant == "tmpfs":
        # room for the earlier files and the rough size check (~20 KiB), not for a second ~140 KiB video
        folder = small_disk(sum(page_rounded(len(data)) for data in reference.values()) + 32 * 1024)
    else:
        folder = tmp_path / "out"
        folder.mkdir()
    for name, data in reference.items():
        (folder / name).write_bytes(data)
    if variant == "injected":
        ffmpeg_that_fills_the_disk(tmp_path, monkeypatch)
    code, error = run(
        [
            "generate",
            "--out",
            str(folder / "run.mp4"),
            "--save-memory",
            str(folder / "mem.safetensors"),
            "--seed",
            "1",
            *FAST,
        ],
        capsys,
    )
    assert code == 2 and error.startswith(f"error: {folder / 'run.mp4'}: ") and NO_SPACE in error, error
    assert snapshot(folder) == reference, "the earlier result is untouched and no temporaries are left"


@pytest.mark.parametrize("variant", VARIANTS)
def test_room_for_the_video_only_leaves_no_partial_set(variant, tmp_path, small_disk, monkeypatch, capsys, reference):
    if variant == "tmpfs":
        folder = small_disk(page_rounded(len(reference["run.mp4"])) + 4096)  # the other files need more than one page
    else:
        folder = tmp_path / "out"
        folder.mkdir()
        monkeypatch.setattr(explorer.generate, "write_re10k", no_space)
    code, error = run(
        ["generate", "--out", str(folder / "run.mp4"), "--save-memory", str(folder / "mem.safetensors"), *FAST], capsys
    )
    assert code == 2 and NO_SPACE in error, error
    named = error.split(": ")[1]
    assert named in {str(folder / n) for n in ("run.cameras.txt", "run.json", "mem.safetensors")}, (
        f"names the file that did not fit: {error}"
    )
    assert os.listdir(folder) == [], "the finished video is not left alone at its final name"


# ---- checks before any work ------------------------------------------------------------------------


def bad_save_memory(tmp_path):
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("x")
    return [
        (str(tmp_path / "a-folder"), "is a folder"),
        (str(tmp_path / "a-file" / "mem.safetensors"), "a-file is not a folder"),
        (str(tmp_path / "sub") + "/", "ends with a path separator"),
        (str(tmp_path / "out" / "run.json"), "named twice"),
    ]


def test_save_memory_and_outputs_are_checked_before_the_backbone_loads(tmp_path, monkeypatch, capsys):
    loads = []
    monkeypatch.setattr(
        explorer.generate, "load_generation_stack", lambda *a, **k: loads.append(a) or pytest.fail("backbone loaded")
    )
    out = tmp_path / "out"
    out.mkdir()
    for path, reason in bad_save_memory(tmp_path):
        code, error = run(["generate", "--out", str(out / "run.mp4"), "--save-memory", path, *FAST], capsys)
        assert code == 2 and reason in error and error.startswith(f"error: {path.rstrip('/')}: "), (path, error)
    (out / "run.cameras.txt").mkdir()
    code, error = run(["generate", "--out", str(out / "run.mp4"), *FAST], capsys)
    assert code == 2 and error == f"error: {out / 'run.cameras.txt'}: is a folder; expected a file name"
    monkeypatch.setattr(
        "shutil.disk_usage", lambda path: types.SimpleNamespace(total=10**6, used=10**6 - 1000, free=1000)
    )
    code, error = run(["generate", "--out", str(tmp_path / "big.mp4"), *FAST], capsys)
    assert code == 2 and "not enough free space" in error and "big.mp4" in error
    assert loads == [] and sorted(os.listdir(out)) == ["run.cameras.txt"] and not (tmp_path / "sub").exists()


def test_an_unwritable_folder_is_refused_up_front(tmp_path, monkeypatch):
    if os.geteuid() == 0:  # root writes anywhere: make access() say no instead
        monkeypatch.setattr("os.access", lambda path, mode: Path(path) != tmp_path)
    else:
        tmp_path.chmod(0o555)
    try:
        with pytest.raises(OutputError, match=rf"^{tmp_path / 'run.mp4'}: folder {tmp_path} is not writable$"):
            OutputSet().add(tmp_path / "run.mp4")
    finally:
        tmp_path.chmod(0o755)


# ---- the output set itself ----------------------------------------------------------------------------


def test_a_failed_rename_in_the_middle_of_a_commit_puts_every_earlier_result_back(tmp_path, monkeypatch):
    names = ["a.mp4", "b.json", "c.txt"]
    for name in names:
        (tmp_path / name).write_text(f"old {name}")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("old folder")
    before = snapshot(tmp_path)
    real_replace = os.replace

    def replace(src, dst, **kwargs):
        if Path(dst).name == "c.txt" and ".tmp-" in Path(src).name:
            raise OSError(errno.EIO, "Input/output error", str(src), None, str(dst))
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr("os.replace", replace)
    outputs = OutputSet()
    for name in ["d", *names]:
        outputs.add(tmp_path / name, folder=name == "d")
    with pytest.raises(OutputError, match=rf"^{tmp_path / 'c.txt'}: Input/output error$"), outputs:
        outputs.write(tmp_path / "d", lambda tmp: (tmp / "x").write_text("new folder"), folder=True)
        for name in names:
            outputs.write(tmp_path / name, lambda tmp: tmp.write_text("new"))
    assert snapshot(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["a.mp4", "b.json", "c.txt", "d"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(OutputError, match="c.txt"), OutputSet() as outputs:
        for name in names:
            outputs.write(fresh / name, lambda tmp: tmp.write_text("new"))
    assert os.listdir(fresh) == [], "a set that never existed leaves no file at all"


def test_temporaries_carry_the_pid_and_finished_files_get_the_usual_permissions(tmp_path):
    with atomic_path(tmp_path / "new" / "x.json") as tmp:
        assert (
            tmp.parent == tmp_path / "new"
            and tmp.name.startswith(f".x.json.tmp-{os.getpid()}-")
            and tmp.suffix == ".json"
        )
        tmp.write_text("{}")
        tmp.chmod(0o600)  # what safetensors and mkstemp do
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "new" / "x.json").stat().st_mode & 0o777 == 0o666 & ~mask
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "deep" / "er" / "x.json"):
        raise RuntimeError("failed")
    assert sorted(os.listdir(tmp_path)) == ["new"], "parent folders the failed write created are removed again"


def test_orphans_of_dead_processes_are_removed_and_a_kept_aside_result_is_restored(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names no process
    alive = os.getppid()
    orphans = [
        f".run.mp4.tmp-{dead.pid}-0a1b2c3d.mp4",
        f"..run.mp4.tmp-{dead.pid}-0a1b2c3d.mp4.tmp-{dead.pid}-00ff00ff.mp4",
    ]
    for name in [*orphans, f".run.mp4.tmp-{alive}-0a1b2c3d.mp4", ".other.mp4.tmp-1-0a1b2c3d.mp4"]:
        (tmp_path / name).write_text("partial")
    (tmp_path / f".folder.tmp-{dead.pid}-0a1b2c3d").mkdir()
    (tmp_path / f".kept.json.old-{dead.pid}-0a1b2c3d.json").write_text("earlier result")
    outputs = OutputSet()
    outputs.add(tmp_path / "run.mp4")
    outputs.add(tmp_path / "folder", folder=True)
    outputs.add(tmp_path / "kept.json")
    assert sorted(os.listdir(tmp_path)) == [
        ".other.mp4.tmp-1-0a1b2c3d.mp4",
        f".run.mp4.tmp-{alive}-0a1b2c3d.mp4",
        "kept.json",
    ]
    assert (tmp_path / "kept.json").read_text() == "earlier result", "killed between its two renames: put back"


def test_orphans_of_writers_known_to_be_gone_are_removed_whatever_their_pid(tmp_path):
    """A batch worker Ray reported dead may still hold its pid (not yet reaped, or on another host)."""
    alive = os.getppid()
    (tmp_path / f".run.mp4.tmp-{alive}-0a1b2c3d.mp4").write_text("partial")
    (tmp_path / f".kept.json.old-{alive}-0a1b2c3d.json").write_text("earlier result")
    sweep_orphans(tmp_path / "run.mp4")
    assert len(os.listdir(tmp_path)) == 2, "a running pid's temporary stays"
    sweep_orphans(tmp_path / "run.mp4", writers_gone=True)
    sweep_orphans(tmp_path / "kept.json", writers_gone=True)
    assert os.listdir(tmp_path) == ["kept.json"]
    assert (tmp_path / "kept.json").read_text() == "earlier result", "a kept-aside result is put back"


# ---- signals --------------------------------------------------------------------------------------------------


def start_generate(out: Path) -> subprocess.Popen:
    """``main.py generate`` long enough to be interrupted; returns once its video temporary exists."""
    cmd = [
        sys.executable,
        "main.py",
        "generate",
        "--backend",
        "tiny",
        "--out",
        str(out),
        "--save-memory",
        str(out.with_name("mem.safetensors")),
        "--height",
        "64",
        "--width",
        "128",
        "--steps",
        "50",
        "--segments",
        "4",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # generous: the machine may be loaded
    while not any(p.name.startswith(f".{out.name}.tmp-{proc.pid}-") for p in out.parent.iterdir()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no temporary appeared"
        time.sleep(0.05)
    return proc


def test_a_signal_during_a_held_step_is_raised_when_the_step_ends():
    steps = []
    with pytest.raises(Interrupted) as raised, raise_on_signals():
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler has run by now; it must not raise here
            steps.append("finished")
        steps.append("after")
    assert steps == ["finished"] and raised.value.signum == signal.SIGTERM
    assert (
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_generate_cleanly_and_removes_its_temporaries(signum, code, tmp_path):
    proc = start_generate(tmp_path / "run.mp4")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and err.rstrip().splitlines()[-1] == f"interrupted ({signal.Signals(signum).name})", (
        err
    )
    assert os.listdir(tmp_path) == [], "no final files, no temporaries"


def test_kill_9_leaves_a_pid_named_temporary_that_the_next_run_removes(tmp_path, capsys):
    proc = start_generate(tmp_path / "run.mp4")
    proc.kill()
    proc.communicate(timeout=60)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".run.mp4.tmp-{proc.pid}-"), left
    code, error = run(["generate", "--out", str(tmp_path / "run.mp4"), *FAST], capsys)
    assert code == 0, error
    assert sorted(os.listdir(tmp_path)) == ["run.cameras.txt", "run.json", "run.mp4"]


# ---- recording in the explorer -----------------------------------------------------------------------------------

RECORDER = textwrap.dedent("""
    import sys, time, types
    import numpy as np, torch
    from explorer.session import SessionRecorder

    folder, stall_at = sys.argv[1], int(sys.argv[2])

    class Memory:  # saves a stand-in file; the save of segment `stall_at` hangs, in the middle of its commit
        saves = 0
        def stats(self):
            return types.SimpleNamespace(points=1, bytes=1)
        def save(self, path):
            Memory.saves += 1
            if Memory.saves == stall_at:
                print("in flight", flush=True)
                time.sleep(600)
            open(path, "wb").write(b"memory")

    def segment(k):
        w2c = torch.eye(4, dtype=torch.float64).repeat(33, 1, 1)
        w2c[:, 2, 3] = torch.linspace(0.1 * k, 0.1 * (k + 1), 33)
        frames = np.full((33, 64, 128, 3), 60 * k + 20, np.uint8)
        return types.SimpleNamespace(index=k, frames=frames, w2c=w2c, frame_ids=[32 * k, 32 * k + 32],
                                     timings={"total": 1.0}, memory_points=1, memory_bytes=1, action="step_forward")

    recorder = SessionRecorder(folder, fps=8.0)
    recorder.start(width=128, height=64, K=torch.tensor([[90.0, 0, 64], [0, 90.0, 32], [0, 0, 1]]),
                   start_w2c=np.eye(4), source="bundled")
    for k in range(stall_at):
        recorder.add_segment(segment(k), memory=Memory())
        print(f"committed {k + 1}", flush=True)
""")


def test_recorder_killed_mid_segment_leaves_a_valid_session_with_every_committed_segment(tmp_path):
    folder = tmp_path / "session"
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORDER, str(folder), "3"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = [proc.stdout.readline().strip() for _ in range(3)]
    assert lines == ["committed 1", "committed 2", "in flight"], (
        lines,
        proc.stderr.read() if proc.poll() is not None else "",
    )
    proc.kill()
    proc.communicate(timeout=60)
    session = load_session(folder)  # what a crash leaves is a valid session...
    assert session.segments_done == 2 and session.frames.shape == (65, 64, 128, 3), "...holding every committed segment"
    assert np.abs(session.frames[40].astype(int) - 80).max() <= 2 and np.array_equal(
        session.last_frame, np.full((64, 128, 3), 80, np.uint8)
    )
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "session"]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".session.tmp-{proc.pid}-"), (
        "the segment in flight, under a pid-named temporary"
    )
    SessionRecorder(folder).start(width=128, height=64, K=session.K, start_w2c=np.eye(4), source="bundled")
    assert os.listdir(tmp_path) == ["session"], "the next recording into that folder removes it"


# ---- walkthrough, eval, export ------------------------------------------------------------------------------------


def test_walkthrough_that_fails_to_write_keeps_the_earlier_one(tmp_path, monkeypatch, capsys):
    out = tmp_path / "walk"
    assert run(["walkthrough", "--out", str(out), "--frames", "2"], capsys)[0] == 0
    before = snapshot(out)
    monkeypatch.setattr(explorer.walkthrough, "write_json_atomic", no_space)
    code, error = run(["walkthrough", "--out", str(out), "--frames", "3"], capsys)
    assert code == 2 and error == f"error: {out / 'session.json'}: {NO_SPACE}"
    assert snapshot(out) == before


def test_eval_and_export_that_fail_to_write_keep_the_earlier_results(tmp_path, monkeypatch, capsys, reference):
    for name in ("run.mp4", "run.json", "run.cameras.txt"):
        (tmp_path / name).write_bytes(reference[name])
    export = tmp_path / "export"
    assert run(["eval", str(tmp_path / "run.mp4")], capsys)[0] == 0
    assert run(["export-worldscore", str(tmp_path / "run.mp4"), str(export)], capsys)[0] == 0
    before = snapshot(tmp_path)
    monkeypatch.setattr(explorer.evaluate, "write_json_atomic", no_space)
    code, error = run(["eval", str(tmp_path / "run.mp4")], capsys)
    assert code == 2 and error == f"error: {tmp_path / 'run.metrics.json'}: {NO_SPACE}"
    monkeypatch.undo()
    real_save_png = explorer.evaluate.save_png

    def fail_at_5(path, rgb):
        return no_space(path) if path.name == "005.png" else real_save_png(path, rgb)

    monkeypatch.setattr(explorer.evaluate, "save_png", fail_at_5)
    code, error = run(["export-worldscore", str(tmp_path / "run.mp4"), str(export)], capsys)
    assert code == 2 and error == f"error: {export / 'frames' / '005.png'}: {NO_SPACE}"
    assert snapshot(tmp_path) == before and sorted(os.listdir(tmp_path)) == sorted(
        ["run.mp4", "run.json", "run.cameras.txt", "run.metrics.json", "export"]
    )
