"""A folder as an image list: click an image to open it."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDockWidget, QListWidget, QListWidgetItem

from codec.evaluate import list_images


class ImageListDock(QDockWidget):
    chosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__("Images", parent)
        self.setObjectName("images")
        self.list = QListWidget()
        self.setWidget(self.list)
        self.folder = ""
        self.list.itemActivated.connect(self._chosen)
        self.list.itemClicked.connect(self._chosen)

    def set_folder(self, folder: str) -> list[str]:
        """List the images of `folder` (raises BitlensError when it has none)."""
        images = list_images(folder)
        self.folder = folder
        self.list.clear()
        for _, p in images:
            item = QListWidgetItem(Path(p).name)
            item.setData(Qt.ItemDataRole.UserRole, str(p))
            item.setToolTip(str(p))
            self.list.addItem(item)
        self.setWindowTitle(f"Images — {Path(folder).name}")
        return [str(p) for _, p in images]

    def paths(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def mark(self, path: str) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == path:
                self.list.setCurrentRow(i)
                return

    def _chosen(self, item: QListWidgetItem) -> None:
        self.chosen.emit(item.data(Qt.ItemDataRole.UserRole))
