"""The kinematics-rich data set (KineVLA's Kine data, on the simulated RM75): tasks whose goal stays fixed
while kinematic attributes vary, planned with kinebridge's own planners (LFE-KMP + KMP via-points, RM75 IK),
executed in the simulated world, written in a format a training loop streams from disk.

Modules: :mod:`.plan` (segment planner), :mod:`.tasks` (tasks, attributes, language), :mod:`.execute`
(the world: kinematic grasps, cameras, scoring), :mod:`.generate` (episodes, workers, manifest).
``kinebridge data kine`` runs :func:`kinebridge.bench.kine.generate.generate`.
"""
