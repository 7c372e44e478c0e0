"""The bridge layer (VL-MP III.B): a decision (skill + target) and the target's 3D keypoints → the task
frames LFE-KMP generalises to. ``config`` (the ``[bridge]`` table), ``core`` (:class:`Bridge`: calibration,
interaction state, EndposeEstimate, validation), ``node`` (the ``bridge`` node kind)."""
