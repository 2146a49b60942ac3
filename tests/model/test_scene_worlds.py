"""Varied procedural worlds: annexes behind doorways (exact depth through the opening), seeded
world configs, and camera paths that stay free and come back to known space."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from model.eval.scenes import ProceduralScene, SceneConfig, SceneRenderer
from model.eval.scenes.paths import PATH_MARGIN_M, world_path
from model.eval.scenes.world import ANNEXES, HELD_OUT_SEED, world_config
from model.geometry.camera import intrinsics_from_fov, invert_pose


@pytest.fixture(scope="module")
def renderer():
    with SceneRenderer() as r:
        yield r


def test_a_doorway_shows_the_corridor_behind_it_and_the_wall_around_it(renderer):
    scene = ProceduralScene(SceneConfig(seed=11, num_objects=0, annex="corridor", annex_wall="wall_z1"))
    door, annex = scene.annex.door, scene.annex
    centre_x = (door.lo + door.hi) / 2
    w2c = torch.eye(4, dtype=torch.float64)
    w2c[0, 3] = -centre_x  # the camera stands in front of the doorway's centre, looking along +z
    width = height = 65
    K = intrinsics_from_fov(50.0, width, height).numpy()
    _, depth = renderer.render(scene, w2c, K, width, height)
    # straight through the opening: the corridor's far wall (z-depth of a plane facing the camera)
    assert depth[32, 32] == pytest.approx(annex.hi[2], rel=1e-4)
    # 0.3 m beside the opening at eye height: the main room's wall
    point = np.array([door.hi + 0.3 - centre_x, 0.0, scene.room_hi[2]])
    u, v = (K @ point)[:2] / point[2]
    assert depth[int(v), int(u)] == pytest.approx(scene.room_hi[2], rel=1e-4)
    # a camera may walk through the doorway into the corridor, not through the wall beside it
    inside = np.array([[centre_x, 0.0, scene.room_hi[2] + 1.0], [door.hi + 0.3, 0.0, scene.room_hi[2] + 0.07]])
    assert scene.is_free(inside, margin=0.25).tolist() == [True, False]


def test_world_configs_are_seeded_valid_and_varied():
    configs = [world_config(seed) for seed in range(40)]
    assert world_config(7) == configs[7]
    assert len({c.room_size for c in configs}) == 40
    assert set(Counter(c.annex for c in configs)) == set(ANNEXES)
    assert any(c.open_sky for c in configs) and any(c.moving_object for c in configs)
    assert not all(c.open_sky for c in configs)
    for config in configs[:10]:
        ProceduralScene(config)  # valid: raises otherwise
    assert HELD_OUT_SEED == 5000


def test_world_paths_stay_free_share_segment_frames_and_come_back(renderer):
    names = []
    for seed in range(16):
        scene = ProceduralScene(world_config(seed))
        name, w2c = world_path(scene, seed, segments=2, segment_frames=17)
        names.append(name)
        assert w2c.shape == (33, 4, 4)
        torch.testing.assert_close(w2c[0], torch.eye(4, dtype=torch.float64))
        assert scene.is_free(invert_pose(w2c)[:, :3, 3].numpy(), PATH_MARGIN_M).all(), name
        if name.endswith("+return"):  # the second segment retraces the first: it ends where the path began
            torch.testing.assert_close(w2c[-1], w2c[0])
            torch.testing.assert_close(w2c[24], w2c[8])
    assert any(n.endswith("+return") for n in names) and any(not n.endswith("+return") for n in names)
    assert world_path(ProceduralScene(world_config(3)), 3)[1].shape == (65, 4, 4)
