"""DieSight GUI: thin PySide6 + pyqtgraph views over ``core``."""
