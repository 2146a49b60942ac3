"""Procedural ground-truth rooms: exact RGB and metric z-depth from any camera, rendered offscreen.

A :class:`ProceduralScene` is a seeded room (floor, four walls, a ceiling or an open sky) with
furniture made of axis-aligned boxes (tables, shelves, cubes) and optionally one box that slides
on the floor as a smooth function of time. A :class:`SceneRenderer` draws it with moderngl on a
headless EGL context (Mesa llvmpipe on CPU machines) and returns ``(rgb, depth)``.

World frame: the start camera's frame (OpenCV axes, as everywhere, see :mod:`model.geometry.camera`).
:meth:`ProceduralScene.start_w2c` is the identity: the start camera stands at the origin looking
along +z at the far wall; world up is -y, so the floor is the plane ``y = eye_height`` and the
ceiling ``y = eye_height - room height``. The room leaves space for the standard camera paths of
:mod:`model.geometry.trajectories` from the start pose (orbit of radius 2 m up to 75 degrees, yaw pan, look
around, forward or backward dolly of 1 m).

Appearance is view-independent so that the same surface point has the same colour in every view:
colours are smooth functions of the surface point's position (soft checkers, stripes or tiles
times a low-frequency brightness wave, all seeded), shaded with a fixed directional light plus
ambient (Lambertian). Sky pixels (``open_sky``) have depth ``+inf`` and a colour that depends on the
viewing direction only. No antialiasing: GL samples every pixel at its centre ``(u + 0.5, v + 0.5)``.

Regenerate the bundled sample scene with::

    python -m model.eval.scenes write-sample resources/sample_scene
"""

from model.eval.scenes.renderer import SceneRenderer
from model.eval.scenes.sample import write_sample
from model.eval.scenes.world import SAMPLE_CONFIG, SAMPLE_FOV_Y_DEG, SAMPLE_SIZE, ProceduralScene, SceneConfig

__all__ = [
    "SAMPLE_CONFIG",
    "SAMPLE_FOV_Y_DEG",
    "SAMPLE_SIZE",
    "ProceduralScene",
    "SceneConfig",
    "SceneRenderer",
    "write_sample",
]
