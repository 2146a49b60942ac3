"""``main.py eval-world``: the world benchmark: systems generate procedural worlds along ``generate``'s
trajectories and every frame is scored against the exact render of its camera.

Modules: :mod:`~explorer.eval_world.systems` (what is compared), :mod:`~explorer.eval_world.pipelines`
(each system as a pipeline), :mod:`~explorer.eval_world.coverage` (the visible / holes split),
:mod:`~explorer.eval_world.run` (the command), :mod:`~explorer.eval_world.report` (summary, table,
contact sheet).
"""
