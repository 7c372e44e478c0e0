"""The decision layer: a planner turns a user's words and the candidate objects in view into a
:class:`~kinebridge.runtime.planner.base.Decision` — a skill and its target, a question, or why not.

Modules: :mod:`.candidates` (what a planner reasons about, from the world or perception),
:mod:`.base` (the decision schemas, the dialogue, the :class:`Planner` interface, the skill-library
specification), :mod:`.local_planner` (the embedded offline default: a small deterministic grammar),
:mod:`.openai_planner` (GI/DI prompt programs on any OpenAI-compatible endpoint; ``openai`` imported
lazily, the ``planner`` extra), :mod:`.image` (the frame with candidate ids drawn, as a data URL),
:mod:`.config` (the ``[planner]`` table, pydantic only), :mod:`.node` (the ``planner`` node kind).
Nothing is imported here, so reading the runtime config loads none of it.
"""
