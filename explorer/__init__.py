"""Application logic of Mirage Explorer (Qt-free or QtCore-only): sessions, camera driving,
the generation worker, preview rendering, recording and replay."""
