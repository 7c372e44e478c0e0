"""kinebridge.runtime.perception: camera frames → 3D semantic keypoints the planner reasons about.

Modules: :mod:`.detector` (the ``Detector`` interface: the shipped keypoint model, a user's
open-vocabulary ONNX detector, both combined), :mod:`.tracking` (ids across frames, outlier
rejection, smoothing, per-keypoint confidence), :mod:`.candidates` (colour, size, position words,
relations, handle direction; the annotated image), :mod:`.pipeline` (one frame → a
``perception/keypoints`` body), :mod:`.node` (the ``perception`` node kind and its frame sources),
:mod:`.config` (``[perception]``). None of them imports torch: the model runs in ONNX Runtime
(:mod:`kinebridge.export.session`).
"""
