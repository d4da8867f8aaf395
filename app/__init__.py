"""Bitlens desktop application (PySide6 + pyqtgraph): a thin view over `codec`."""
