"""Shared fixtures: one headless (EGL) scene renderer for the whole session."""

import pytest

from model.scenes import SceneRenderer


@pytest.fixture(scope="session")
def renderer():
    """A :class:`model.scenes.SceneRenderer` shared by every test that needs exact RGB-D ground truth."""
    with SceneRenderer() as shared:
        yield shared
