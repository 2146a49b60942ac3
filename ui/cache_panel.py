"""The latent-cache panel: the memory as a 3D point view with colour modes, label toggles, camera
frustums, statistics and point picking.

The panel takes the worker's :class:`~explorer.worker.messages.MemorySnapshot` (or anything with
the same numpy attributes), so it works without the generation worker. The 3D view is a pyqtgraph
``GLViewWidget`` (Z-up orbit camera: drag to orbit, wheel to zoom, Ctrl+drag to pan); on Qt's
``offscreen`` platform, where OpenGL widgets cannot work, a text placeholder takes its place and
everything else (stats, colour computation, picking maths) still runs.

Label toggles: "static" is the stored memory; the other labels are the cells the last write
rejected. Under the view, the panel counts those per label (in the label's colour) and says how
many have no position (cells without depth): they cannot be drawn, whatever the toggles say.

Picking: a click (press and release without dragging) projects the drawn points with the view's
own projection and view matrices and selects the point nearest to the cursor in screen space
(within :attr:`CachePanel.pick_radius_px`; ties go to the point nearer the eye). The panel then
shows that point's segment, frame and its depth in the current explorer camera, and the point is
marked in the view by a magenta ring between black edges around a white dot (:data:`PICK_RING`), drawn
over the cloud (no depth test) so it stays visible even behind other points.

View: Reset view (the default orbit, framed on the cloud), Fit to cloud (keeps the direction),
Look through camera (the eye at the current explorer camera, its field of view); a point-size
slider (0 = automatic by point count); a colour legend for the current mode; per-label counts (stored
static points and the last write's rejected cells, with those that have no position). The orbit
view is kept per scene (:meth:`CachePanel.set_scene`): going back to a scene restores its view.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from explorer.worker.messages import MemorySnapshot
from model.memory.latent import CellLabel
from ui import cloud_math

COLOR_MODES = {"rgb": "Display RGB", "pca": "Latent PCA", "labels": "Labels", "provenance": "Provenance (segment)"}
MAX_POINTS = 300_000  # points drawn at most; above this a fixed stride decimates the cloud
PATH_FRUSTUMS = 8  # frustums drawn along a planned camera path
CAMERA_REDRAW_MS = 100  # camera frustums are redrawn at most this often (a redraw costs a full repaint)
DEFAULT_VIEW = {"distance": 6.0, "elevation": 25.0, "azimuth": -90.0, "fov": 60.0}  # the orbit camera at start
MAX_POINT_SIZE = 12  # pixels, the point-size slider's top
# the picked point's marker, outermost first: (diameter in pixels, RGBA 0-1) discs drawn one over the other,
# a magenta ring with black edges around a white dot, distinct from every colour mode's points
PICK_RING = (
    (26.0, (0.0, 0.0, 0.0, 1.0)),
    (22.0, (1.0, 0.15, 0.85, 1.0)),
    (12.0, (0.0, 0.0, 0.0, 1.0)),
    (6.0, (1.0, 1.0, 1.0, 1.0)),
)


def _swatch(text: str, rgba) -> str:
    """Rich text: a coloured square and ``text``."""
    r, g, b = (int(round(c * 255)) for c in rgba[:3])
    return f'<span style="color: rgb({r}, {g}, {b})">■</span> {text}'


def _has_position(positions: np.ndarray) -> np.ndarray:
    """``[M]`` bool: rows of ``[M, 3]`` positions that are finite (rejected cells without depth are NaN)."""
    return np.isfinite(np.asarray(positions).reshape(-1, 3)).all(axis=1)


def _rejected_summary(labels: np.ndarray, positions: np.ndarray) -> str:
    """Rich text: rejected cells per label (in the label's colour) and how many have no position to draw."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) == 0:
        return "no cells rejected by the last write"
    counts = np.bincount(labels, minlength=len(CellLabel))
    parts = []
    for label in CellLabel:
        if label is not CellLabel.STATIC and counts[label]:
            r, g, b, _ = (int(c * 255) for c in cloud_math.LABEL_COLORS[label])
            parts.append(f'<span style="color: rgb({r}, {g}, {b})">{label.name.lower()} {counts[label]:,}</span>')
    missing = int(len(labels) - _has_position(positions).sum())
    unplaced = f"; {missing:,} have no position (no depth) and are not drawn" if missing else ""
    return f"{len(labels):,} cells rejected by the last write: {' · '.join(parts)}{unplaced}"


def gl_available() -> bool:
    """Whether OpenGL widgets can work on this Qt platform (not on ``offscreen``)."""
    return QGuiApplication.platformName() != "offscreen"


def _create_gl_view(parent: QWidget):
    """The GL view and its items (pyqtgraph.opengl is imported here: it needs PyOpenGL and a GL platform)."""
    import pyqtgraph.opengl as gl

    class CloudView(gl.GLViewWidget):
        """A ``GLViewWidget`` that reports clicks (press + release within 4 px) as ``clicked(pos)``."""

        clicked = Signal(QPointF)

        def mousePressEvent(self, ev):
            self._press_pos = ev.position()
            super().mousePressEvent(ev)

        def mouseReleaseEvent(self, ev):
            start = getattr(self, "_press_pos", None)
            if (
                ev.button() == Qt.MouseButton.LeftButton
                and start is not None
                and (ev.position() - start).manhattanLength() <= 4
            ):
                self.clicked.emit(ev.position())
            super().mouseReleaseEvent(ev)

    view = CloudView(parent)
    view.setBackgroundColor((18, 20, 26))
    view.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # WASD is routed at window level, never here
    view.setCameraPosition(distance=6.0, elevation=25.0, azimuth=-90.0)
    grid = gl.GLGridItem()
    grid.setSize(10, 10)
    grid.setSpacing(1, 1)
    grid.translate(0, 0, -1.5)
    grid.setColor((255, 255, 255, 40))
    view.addItem(grid)
    points = gl.GLScatterPlotItem(
        pos=np.zeros((1, 3), np.float32), color=(0, 0, 0, 0), size=2.0, pxMode=True, glOptions="opaque"
    )

    def line_item(color: tuple[float, float, float, float], width: float) -> gl.GLLinePlotItem:
        """An empty, opaque line-segment item (``mode="lines"``) of ``color`` (RGBA 0-1), ``width`` pixels."""
        return gl.GLLinePlotItem(
            pos=np.zeros((2, 3), np.float32),
            color=color,
            width=width,
            mode="lines",
            antialias=False,
            glOptions="opaque",
        )

    trajectory = line_item(color=(0.9, 0.9, 0.9, 0.8), width=1.0)
    current = line_item(color=(1.0, 0.85, 0.1, 1.0), width=2.0)
    picked = PickMarker(gl)
    for item in (points, trajectory, current, *picked.items):
        view.addItem(item)
    return view, points, trajectory, current, picked


class PickMarker:
    """The picked point's marker: the :data:`PICK_RING` discs as pyqtgraph scatter items drawn after the
    cloud without depth test (``gl``: the ``pyqtgraph.opengl`` module)."""

    def __init__(self, gl) -> None:
        from OpenGL import GL

        overlay = {GL.GL_DEPTH_TEST: False, GL.GL_BLEND: False, GL.GL_CULL_FACE: False}
        self.items = []
        for order, (size, color) in enumerate(PICK_RING):
            item = gl.GLScatterPlotItem(
                pos=np.zeros((1, 3), np.float32), color=color, size=size, pxMode=True, glOptions=overlay
            )
            item.setDepthValue(10 + order)  # drawn after the cloud (depth value 0), outermost first
            item.setVisible(False)
            self.items.append(item)

    def set_position(self, position: np.ndarray) -> None:
        """Centre the marker on ``position`` ``[1, 3]`` float32 (display coordinates)."""
        for item in self.items:
            item.setData(pos=np.asarray(position, np.float32).reshape(1, 3))

    def setVisible(self, visible: bool) -> None:  # noqa: N802 (Qt-style, like the items)
        for item in self.items:
            item.setVisible(visible)

    def visible(self) -> bool:
        return all(item.visible() for item in self.items)


class CachePanel(QWidget):
    """3D view of the latent memory with colour modes, per-label toggles, frustums, stats and picking.

    Signals:
        point_picked(dict): ``{"index", "segment", "frame", "depth_m", "position"}`` of a clicked point.
    """

    point_picked = Signal(dict)

    def __init__(self, parent: QWidget | None = None, max_points: int = MAX_POINTS, use_gl: bool | None = None) -> None:
        super().__init__(parent)
        self.max_points = max_points
        self.pick_radius_px = 8.0
        self._data: MemorySnapshot | None = None
        self._drawn_points = np.zeros((0, 3), np.float32)  # display axes, what the scatter item holds
        self._drawn_source: list[tuple[str, np.ndarray]] = []  # ("memory"|"rejected", indices) per drawn block
        self._drawn_colors = np.zeros((0, 4), np.float32)
        self._drawable = 0
        self._camera = {"trajectory": np.zeros((0, 4, 4)), "current": None, "K": None, "size": None}
        self._segment_points: list[int] = []
        self._camera_timer = QTimer(self, singleShot=True, interval=CAMERA_REDRAW_MS)
        self._camera_timer.timeout.connect(self._draw_cameras)
        self._planned: np.ndarray | None = None  # [T, 4, 4] w2c of the planned camera path (ui/path_editor.py)
        self._planned_item = None

        self.mode_box = QComboBox()
        for key, text in COLOR_MODES.items():
            self.mode_box.addItem(text, key)
        self.mode_box.currentIndexChanged.connect(self._redraw)
        self.label_boxes: dict[CellLabel, QCheckBox] = {}
        toggles = QGridLayout()  # three per row: the panel stays narrow however many labels there are
        for number, label in enumerate(CellLabel):
            box = QCheckBox(label.name.lower())
            box.setChecked(True)
            r, g, b, _ = cloud_math.LABEL_COLORS[label]
            box.setStyleSheet(f"QCheckBox {{ color: rgb({int(r * 255)}, {int(g * 255)}, {int(b * 255)}); }}")
            box.toggled.connect(self._redraw)
            box.setToolTip(
                "show the stored memory points"
                if label is CellLabel.STATIC
                else f"show the cells the last write rejected as {label.name.lower()}"
            )
            self.label_boxes[label] = box
            toggles.addWidget(box, number // 3, number % 3)
        self.stats_label = QLabel("no memory yet")
        self.stats_label.setWordWrap(True)
        self.rejected_label = QLabel("")
        self.rejected_label.setWordWrap(True)
        self.rejected_label.setTextFormat(Qt.TextFormat.RichText)
        self.rejected_label.setToolTip(
            "cells the last write left out of the memory, per label; only those with a depth have a position to draw"
        )
        self.pick_label = QLabel("click a point to inspect it")
        self.pick_label.setWordWrap(True)
        self.picked_index: int | None = None  # drawn index of the picked point (its ring marks it in the view)
        self.legend_label = QLabel("")
        self.legend_label.setWordWrap(True)
        self.legend_label.setTextFormat(Qt.TextFormat.RichText)
        self.legend_label.setToolTip("what the colours of the current colour mode mean")
        self.counts_label = QLabel("")
        self.counts_label.setWordWrap(True)
        self.counts_label.setTextFormat(Qt.TextFormat.RichText)
        self.counts_label.setToolTip("stored points (static) and the last write's rejected cells per label")
        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(0, MAX_POINT_SIZE)
        self.size_slider.setValue(0)
        self.size_slider.setToolTip("point size in pixels (0: automatic, smaller for bigger clouds)")
        self.size_slider.valueChanged.connect(self._apply_point_size)
        self.reset_button = QPushButton("Reset view")
        self.reset_button.setToolTip("the default orbit view, framed on the cloud (Ctrl+0)")
        self.reset_button.clicked.connect(self.reset_view)
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("centre the cloud and fit it in the view, keeping the direction (F)")
        self.fit_button.clicked.connect(self.frame_cloud)
        self.look_button = QPushButton("Look through camera")
        self.look_button.setToolTip("put the view's eye at the current explorer camera (V)")
        self.look_button.clicked.connect(self.look_through_camera)
        self._views: dict[str, dict] = {}  # saved orbit view per scene key
        self._scene: str | None = None
        self._scene_shown = False  # the current scene's view has been shown (so it is worth keeping)
        self.mode_box.setToolTip("what the point colours show (the legend below says how to read them)")

        self.use_gl = gl_available() if use_gl is None else use_gl
        if self.use_gl:
            self.view, self._points_item, self._trajectory_item, self._current_item, self._picked_item = (
                _create_gl_view(self)
            )
            self.view.setToolTip("drag: orbit · wheel: zoom · Ctrl+drag: pan · click: inspect a point")
            self.view.clicked.connect(lambda pos: self.pick(pos.x(), pos.y()))
        else:
            self.view = QLabel("3D view needs OpenGL\n(Qt platform 'offscreen')")
            self.view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.view.setMinimumSize(240, 200)

        form = QFormLayout()
        form.addRow("Colour", self.mode_box)
        form.addRow("Legend", self.legend_label)
        form.addRow("Show", toggles)
        form.addRow("Point size", self.size_slider)
        buttons = QHBoxLayout()
        for button in (self.reset_button, self.fit_button, self.look_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.view, stretch=1)
        layout.addLayout(buttons)
        layout.addLayout(form)
        layout.addWidget(self.stats_label)
        layout.addWidget(self.counts_label)
        layout.addWidget(self.rejected_label)
        layout.addWidget(self.pick_label)

    # ---- data ----------------------------------------------------------------------------

    @property
    def color_mode(self) -> str:
        return self.mode_box.currentData()

    def set_color_mode(self, mode: str) -> None:
        """Switch colouring: one of :data:`COLOR_MODES` (``rgb``, ``pca``, ``labels``, ``provenance``)."""
        index = self.mode_box.findData(mode)
        if index < 0:
            raise ValueError(f"colour mode must be one of {list(COLOR_MODES)}, got {mode!r}")
        self.mode_box.setCurrentIndex(index)

    def set_label_visible(self, label: CellLabel, visible: bool) -> None:
        """Show or hide the points of one label (static = the stored memory; others = last rejected cells)."""
        self.label_boxes[CellLabel(label)].setChecked(visible)

    @property
    def snapshot(self) -> MemorySnapshot | None:
        """The memory snapshot shown (None: none)."""
        return self._data

    def set_data(self, data: MemorySnapshot | None) -> None:
        """Show a new memory snapshot (None clears the view)."""
        self._data = data
        self._set_picked(None)
        has_features = data is not None and data.features is not None
        pca = self.mode_box.model().item(self.mode_box.findData("pca"))
        pca.setEnabled(has_features)
        pca.setToolTip("" if has_features else "this snapshot carries no latent features")
        if self.color_mode == "pca" and not has_features and data is not None:
            self.mode_box.blockSignals(True)
            self.set_color_mode("rgb")
            self.mode_box.blockSignals(False)
        if data is None:
            self._segment_points = []
        else:
            self._segment_points = (
                np.bincount(np.asarray(data.segments, dtype=np.int64), minlength=1).tolist()
                if len(data.segments)
                else []
            )
        self._redraw()

    @property
    def drawn_points(self) -> np.ndarray:
        """``[N, 3]`` display-axis positions currently drawn (after decimation and label filtering)."""
        return self._drawn_points

    @property
    def drawn_colors(self) -> np.ndarray:
        """``[N, 4]`` RGBA colours currently drawn."""
        return self._drawn_colors

    def _redraw(self) -> None:
        data = self._data
        blocks, points, colors = [], [], []
        self._drawable = 0  # points the toggles ask for that have a position (drawn unless decimated)
        if data is not None:
            n = len(data.positions)
            if self.label_boxes[CellLabel.STATIC].isChecked() and n:
                self._drawable += n
                index = cloud_math.decimate_index(n, self.max_points)
                blocks.append(("memory", index))
                points.append(cloud_math.to_display(data.positions[index]))
                colors.append(self._memory_colors(data, index))
            shown = np.isin(
                data.rejected_labels,
                [int(k) for k, box in self.label_boxes.items() if k != CellLabel.STATIC and box.isChecked()],
            )
            shown &= _has_position(data.rejected_positions)
            index = np.flatnonzero(shown)
            self._drawable += len(index)
            if len(index):
                index = index[cloud_math.decimate_index(len(index), self.max_points)]
                blocks.append(("rejected", index))
                points.append(cloud_math.to_display(data.rejected_positions[index]))
                colors.append(cloud_math.label_colors(data.rejected_labels[index]))
        self._drawn_source = blocks
        self._drawn_points = np.concatenate(points) if points else np.zeros((0, 3), np.float32)
        self._drawn_colors = np.concatenate(colors) if colors else np.zeros((0, 4), np.float32)
        if self.use_gl:
            if len(self._drawn_points):
                self._points_item.setData(pos=self._drawn_points, color=self._drawn_colors, size=self.point_size)
            self._points_item.setVisible(len(self._drawn_points) > 0)
        self._set_picked(None)
        self._update_stats()
        self._update_legend()

    @property
    def point_size(self) -> float:
        """Drawn point size in pixels: the slider's value, or (at 0) by point count."""
        if self.size_slider.value():
            return float(self.size_slider.value())
        n = len(self._drawn_points)
        return 2.0 if n > 100_000 else 3.0 if n > 10_000 else 5.0

    def _apply_point_size(self) -> None:
        if self.use_gl and len(self._drawn_points):
            self._points_item.setData(size=self.point_size)

    def _update_legend(self) -> None:
        segments = self._data.segments if self._data is not None else None
        entries = cloud_math.legend_entries(self.color_mode, segments)
        self.legend_label.setText(" · ".join(_swatch(text, rgba) for text, rgba in entries) or "no points")

    def label_counts(self) -> dict[CellLabel, tuple[int, int]]:
        """Per label: ``(cells, cells without a position)`` of the shown memory."""
        data = self._data
        if data is None:
            return {label: (0, 0) for label in CellLabel}
        return cloud_math.label_counts(data.rejected_labels, data.rejected_positions, len(data.positions))

    def _memory_colors(self, data: MemorySnapshot, index: np.ndarray) -> np.ndarray:
        mode = self.color_mode
        if mode == "pca" and data.features is not None and len(data.features):
            return cloud_math.pca_colors(np.asarray(data.features)[index])
        if mode == "labels":
            return cloud_math.label_colors(np.full(len(index), int(CellLabel.STATIC)))
        if mode == "provenance":
            return cloud_math.provenance_colors(data.segments[index])
        return cloud_math.rgb_colors(data.colors[index])

    def _update_stats(self) -> None:
        data = self._data
        if data is None:
            self.stats_label.setText("no memory yet")
            self.rejected_label.setText("")
            return
        n = len(data.positions)
        mib = data.bytes / 2**20
        per_point = data.bytes / n if n else 0.0
        growth = ""
        if len(self._segment_points) > 1:
            added = self._segment_points[-1]
            growth = f" · last segment +{added:,} pts (+{added * per_point / 2**20:.2f} MiB)"
        drawn = len(self._drawn_points)
        decimated = f" (drawing {drawn:,} of {self._drawable:,})" if drawn < self._drawable else ""
        written = f"photo + {len(self._segment_points) - 1} segments" if self._segment_points else "empty"
        self.stats_label.setText(f"{n:,} points · {mib:.2f} MiB · {written}{growth}{decimated}")
        self.rejected_label.setText(_rejected_summary(data.rejected_labels, data.rejected_positions))
        parts = []
        for label, (count, unplaced) in self.label_counts().items():
            without = f" ({unplaced:,} without position)" if unplaced else ""
            parts.append(_swatch(f"{label.name.lower()} {count:,}{without}", cloud_math.LABEL_COLORS[label]))
        self.counts_label.setText("Counts: " + " · ".join(parts))

    # ---- cameras -------------------------------------------------------------------------

    def set_cameras(
        self, trajectory_w2c: np.ndarray, current_w2c: np.ndarray | None, K: np.ndarray, width: int, height: int
    ) -> None:
        """Frustums of the generated trajectory (every 8th frame) and of the current camera.

        Redraws are coalesced to one per :data:`CAMERA_REDRAW_MS` so flying at 60 Hz stays cheap.
        """
        self._camera = {
            "trajectory": np.asarray(trajectory_w2c, dtype=np.float64).reshape(-1, 4, 4),
            "current": current_w2c,
            "K": np.asarray(K, dtype=np.float64),
            "size": (width, height),
        }
        if not self._camera_timer.isActive():
            self._camera_timer.start()

    def _draw_cameras(self) -> None:
        cam = self._camera
        if cam["K"] is None or not self.use_gl:
            return
        width, height = cam["size"]
        scale = self._frustum_scale()
        trajectory = cam["trajectory"][::8]
        if len(trajectory):
            self._trajectory_item.setData(
                pos=cloud_math.frustum_lines(trajectory, cam["K"], width, height, 0.6 * scale)
            )
        self._trajectory_item.setVisible(len(trajectory) > 0)
        if cam["current"] is not None:
            self._current_item.setData(pos=cloud_math.frustum_lines(cam["current"], cam["K"], width, height, scale))
        self._current_item.setVisible(cam["current"] is not None)
        self._draw_planned()

    def set_planned_path(self, w2c: np.ndarray | None) -> None:
        """A planned camera path ``[T, 4, 4]`` w2c in orange: the line through its camera centres and
        :data:`PATH_FRUSTUMS` frustums spread along it (the first and last included); None: none."""
        self._planned = None if w2c is None or not len(w2c) else np.asarray(w2c, dtype=np.float64).reshape(-1, 4, 4)
        self._draw_planned()

    def _draw_planned(self) -> None:
        cam = self._camera
        if not self.use_gl:
            return
        if self._planned_item is None:
            import pyqtgraph.opengl as gl

            self._planned_item = gl.GLLinePlotItem(
                pos=np.zeros((2, 3), np.float32), color=(1.0, 0.45, 0.05, 1.0), width=2.0, mode="lines"
            )
            self.view.addItem(self._planned_item)
        show = self._planned is not None and cam["K"] is not None
        if show:
            width, height = cam["size"]
            count = len(self._planned)
            poses = self._planned[np.unique(np.linspace(0, count - 1, min(count, PATH_FRUSTUMS)).round().astype(int))]
            centres = cloud_math.to_display(np.linalg.inv(self._planned)[:, :3, 3])
            track = np.stack([centres[:-1], centres[1:]], axis=1).reshape(-1, 3)
            frustums = cloud_math.frustum_lines(poses, cam["K"], width, height, 0.3 * self._frustum_scale())
            self._planned_item.setData(pos=np.concatenate([track, frustums]))
        self._planned_item.setVisible(show)

    def _frustum_scale(self) -> float:
        """Frustum depth: a tenth of the cloud's extent (0.3 m without a cloud)."""
        if len(self._drawn_points) == 0:
            return 0.3
        extent = np.percentile(self._drawn_points, 95, axis=0) - np.percentile(self._drawn_points, 5, axis=0)
        return float(max(np.linalg.norm(extent) * 0.1, 0.05))

    def frame_cloud(self) -> None:
        """Point the 3D view's orbit camera at the cloud's centre, far enough to see all of it."""
        if not self.use_gl or len(self._drawn_points) == 0:
            return
        from pyqtgraph import Vector

        centre = np.median(self._drawn_points, axis=0)
        extent = np.percentile(self._drawn_points, 95, axis=0) - np.percentile(self._drawn_points, 5, axis=0)
        self.view.opts["fov"] = DEFAULT_VIEW["fov"]
        self.view.setCameraPosition(
            pos=Vector(*centre.tolist()), distance=float(max(np.linalg.norm(extent) * 0.9, 1.0))
        )

    def reset_view(self) -> None:
        """The default orbit direction (elevation 25°, from the front), framed on the cloud."""
        if not self.use_gl:
            return
        self.view.setCameraPosition(elevation=DEFAULT_VIEW["elevation"], azimuth=DEFAULT_VIEW["azimuth"])
        self.view.opts["fov"] = DEFAULT_VIEW["fov"]
        if len(self._drawn_points):
            self.frame_cloud()
        else:
            from pyqtgraph import Vector

            self.view.setCameraPosition(pos=Vector(0, 0, 0), distance=DEFAULT_VIEW["distance"])

    def look_through_camera(self) -> bool:
        """Put the view's eye at the current explorer camera, looking where it looks, with its field of view."""
        cam = self._camera
        if not self.use_gl or cam["current"] is None or cam["K"] is None:
            return False
        from pyqtgraph import Vector

        params = cloud_math.orbit_through(cam["current"], cam["K"], cam["size"][0])
        self.view.opts["fov"] = params["fov"]
        self.view.setCameraPosition(
            pos=Vector(*params["center"].tolist()),
            distance=params["distance"],
            elevation=params["elevation"],
            azimuth=params["azimuth"],
        )
        return True

    def view_params(self) -> dict | None:
        """The orbit view: ``center``, ``distance``, ``elevation``, ``azimuth``, ``fov`` (None without GL)."""
        if not self.use_gl:
            return None
        o = self.view.opts
        centre = o["center"]
        return {
            "center": [float(centre.x()), float(centre.y()), float(centre.z())],
            "distance": float(o["distance"]),
            "elevation": float(o["elevation"]),
            "azimuth": float(o["azimuth"]),
            "fov": float(o["fov"]),
        }

    def set_scene(self, key: str) -> None:
        """A scene ``key`` (its source) is shown from now on: the view of the previous scene is kept for
        it, and the next :meth:`show_scene_view` restores the view this scene had, if any."""
        if self._scene is not None and self._scene_shown and self.view_params() is not None:
            self._views[self._scene] = self.view_params()
        self._scene, self._scene_shown = key, False

    def show_scene_view(self) -> None:
        """The saved view of the current scene, or (first time) the default view framed on the cloud."""
        saved = self._views.get(self._scene) if self._scene is not None else None
        self._scene_shown = True
        if saved is None or not self.use_gl:
            self.reset_view()
            return
        from pyqtgraph import Vector

        self.view.opts["fov"] = saved["fov"]
        self.view.setCameraPosition(
            pos=Vector(*saved["center"]),
            distance=saved["distance"],
            elevation=saved["elevation"],
            azimuth=saved["azimuth"],
        )

    # ---- picking -------------------------------------------------------------------------

    def pick(self, x: float, y: float) -> dict | None:
        """Select the drawn point nearest to widget position ``(x, y)`` (logical pixels) and describe it."""
        if not self.use_gl or len(self._drawn_points) == 0:
            return None
        ratio = self.view.devicePixelRatioF()
        viewport = self.view.getViewport()
        mvp = self.view.projectionMatrix(viewport, viewport) * self.view.viewMatrix()
        mvp = np.array(mvp.data(), dtype=np.float64).reshape(4, 4).T  # QMatrix4x4.data() is column-major
        xy, depth, inside = cloud_math.project_to_screen(self._drawn_points, mvp, viewport[2], viewport[3])
        hit = cloud_math.pick_nearest(xy, depth, inside, (x * ratio, y * ratio), self.pick_radius_px * ratio)
        if hit is None:
            self.pick_label.setText("no point under the cursor")
            return None
        info = self.describe_drawn(hit)
        self._set_picked(hit)
        self.point_picked.emit(info)
        return info

    def _set_picked(self, drawn_index: int | None) -> None:
        """Mark the ``drawn_index``-th drawn point with the pick ring (None: no ring)."""
        self.picked_index = drawn_index
        if not self.use_gl:
            return
        if drawn_index is not None:
            self._picked_item.set_position(self._drawn_points[drawn_index : drawn_index + 1])
        self._picked_item.setVisible(drawn_index is not None)

    def describe_drawn(self, drawn_index: int) -> dict:
        """Segment, frame, label and depth (in the current camera) of the ``drawn_index``-th drawn point."""
        data, offset = self._data, 0
        for source_kind, index in self._drawn_source:
            if drawn_index < offset + len(index):
                kind, source = source_kind, int(index[drawn_index - offset])
                break
            offset += len(index)
        if kind == "memory":
            position = np.asarray(data.positions[source], dtype=np.float64)
            info = {
                "kind": kind,
                "index": source,
                "segment": int(data.segments[source]),
                "frame": int(data.frames[source]),
                "label": CellLabel.STATIC.name.lower(),
            }
        else:
            position = np.asarray(data.rejected_positions[source], dtype=np.float64)
            info = {
                "kind": kind,
                "index": source,
                "segment": None,
                "frame": None,
                "label": CellLabel(int(data.rejected_labels[source])).name.lower(),
            }
        current = self._camera["current"]
        info["position"] = position.tolist()
        info["depth_m"] = (
            float((np.asarray(current, dtype=np.float64) @ np.append(position, 1.0))[2])
            if current is not None
            else None
        )
        depth = f"{info['depth_m']:.2f} m from the camera" if info["depth_m"] is not None else "depth: no camera yet"
        where = (
            f"segment {info['segment']}, frame {info['frame']}" if kind == "memory" else "rejected by the last write"
        )
        self.pick_label.setText(f"{info['label']} point #{source}: {where}; {depth}")
        return info
