"""DieSight core: data, models, training, scoring and export. Never imports Qt."""

__version__ = "0.1.0"
