"""MP4 writing, joining and reading through the bundled ffmpeg."""

import numpy as np
import pytest

from model.io.atomic import OutputError
from model.io.video import (
    FfmpegError,
    Mp4Writer,
    concat_mp4,
    iter_mp4_frames,
    mp4_frame_size,
    read_mp4_frames,
    read_mp4_metadata,
    run_ffmpeg,
)


def write_video(path, frames, shade):
    with Mp4Writer(path, 32, 16, 8, metadata={"shade": shade}) as video:
        for _ in range(frames):
            video.append(np.full((16, 32, 3), shade, np.uint8))


def test_frames_size_and_metadata_read_back(tmp_path):
    path = tmp_path / "a.mp4"
    write_video(path, 3, 100)
    assert mp4_frame_size(path) == (16, 32)
    frames = read_mp4_frames(path)
    assert frames.shape == (3, 16, 32, 3) and abs(int(frames.mean()) - 100) <= 2
    assert [f.shape for f in iter_mp4_frames(path)] == [(16, 32, 3)] * 3
    assert read_mp4_metadata(path) == {"shade": 100}


def test_concat_joins_and_carries_the_comment(tmp_path):
    write_video(tmp_path / "a.mp4", 2, 50)
    write_video(tmp_path / "b.mp4", 3, 200)
    comment = {"text": "a=b; c#d \\ e\nf", "n": [1, 2]}  # every character ffmetadata escapes
    concat_mp4([tmp_path / "a.mp4", tmp_path / "b.mp4"], tmp_path / "ab.mp4", comment)
    frames = read_mp4_frames(tmp_path / "ab.mp4")
    assert len(frames) == 5 and frames[1].mean() < 100 < frames[2].mean()
    assert read_mp4_metadata(tmp_path / "ab.mp4") == comment
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "ab.mp4", "b.mp4"], "helper files removed"


def test_ffmpeg_failures_say_what_ffmpeg_said(tmp_path):
    with pytest.raises(FfmpegError, match="No such file or directory"):
        run_ffmpeg(["-i", str(tmp_path / "absent.mp4"), "-f", "null", "-"])
    with pytest.raises(OutputError, match=r"ab\.mp4.*ffmpeg could not join the video"):
        concat_mp4([tmp_path / "absent.mp4"], tmp_path / "ab.mp4", {})
