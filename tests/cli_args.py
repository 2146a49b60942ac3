"""Command-line arguments the tests share: the smallest generation a headless command can run."""

#: ``main.py generate``-style arguments for one tiny-backend segment of 64x128 frames with one denoising step.
TINY_FAST = ["--backend", "tiny", "--height", "64", "--width", "128", "--steps", "1", "--segments", "1"]
