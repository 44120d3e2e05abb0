"""DieSight GUI: thin PySide6 + pyqtgraph views over ``core``."""

try:
    from app._pyside_compat import protect_singletons
except ImportError:  # no usable Qt: the headless commands of app.entry must still work
    pass
else:
    protect_singletons()  # as early as possible; see app/_pyside_compat.py
