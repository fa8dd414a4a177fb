"""Lessons: the notebooks' content, written as code.

``table`` maps lessons to curriculum rows and claims; ``lessonNN_*`` modules hold each
notebook's cells, its panel and the checks its closing cell asserts; ``panel`` builds the
interactive panels; ``build`` writes and executes the notebooks
(``python -m simulator.lessons.build``).
"""
