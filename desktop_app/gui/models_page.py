"""Models: pick a model from the local Hugging Face cache or a folder, see what it needs, load it.

Inspecting a folder reads only its config and weight headers, so it is done on selection;
discovery and loading run as background jobs. Nothing is ever downloaded.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.events import Progress
from desktop_app.core.workspace import Workspace
from desktop_app.gui.jobs import Job
from desktop_app.gui.widgets.memory_plan import MemoryPlanLabel

log = logging.getLogger("rlhf-desk")

DEVICES = ["auto", "cpu", "cuda", "mps"]
DTYPES = ["auto", "bfloat16", "float16", "float32"]


class ModelsPage(QWidget):
    model_loaded = Signal(object)   # ml.models.loader.LoadedModel
    load_started = Signal(str)      # the model's folder name
    load_failed = Signal(str)       # a one-line message

    def __init__(self, workspace: Workspace, parent: QWidget | None = None):
        super().__init__(parent)
        self.workspace = workspace
        self.info = None
        self.load_job: Job | None = None
        self.scan_job: Job | None = None
        self.loaded_path: str | None = None

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Model", "Source", "Folder"])
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.tree.currentItemChanged.connect(lambda item, _: item and self.select_path(
            item.data(0, Qt.ItemDataRole.UserRole)))

        open_button = QPushButton("Open model folder…")
        open_button.clicked.connect(self.open_folder_dialog)
        self.open_file_button = QPushButton("Open model file…")
        self.open_file_button.setToolTip("Import a GGUF file (llama.cpp's format) into this "
                                         "workspace's models folder")
        self.open_file_button.clicked.connect(self.open_model_file_dialog)
        add_button = QPushButton("Add folder to scan…")
        add_button.clicked.connect(self.add_scan_folder_dialog)
        rescan_button = QPushButton("Rescan")
        rescan_button.clicked.connect(self.rescan)
        self.scan_label = QLabel("")
        self.scan_label.setWordWrap(True)  # beside four buttons at 1024 px
        top = QHBoxLayout()
        for w in (open_button, self.open_file_button, add_button, rescan_button):
            top.addWidget(w)
        top.addWidget(self.scan_label, 1)

        self.details = QLabel("Select a model to see what it needs.")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.device_box = QComboBox()
        self.device_box.addItems(DEVICES)
        self.dtype_box = QComboBox()
        self.dtype_box.addItems(DTYPES)
        self.quant_box = QComboBox()
        from desktop_app.ml.models.quantize import CHOICES, LABELS  # no ML stack imported
        for choice in CHOICES:
            self.quant_box.addItem(LABELS[choice], choice)
        self.quant_box.setToolTip("Store the base weights in 8 or 4 bits (bitsandbytes): far "
                                  "less GPU memory for generation and for the adapters trained "
                                  "on it. On the CPU it saves little and is slower.")
        saved = self.quant_box.findData(workspace.load_settings().get("quantize", "none"))
        self.quant_box.setCurrentIndex(max(0, saved))
        self.plan_label = MemoryPlanLabel(self._plan_job, "Generating pairs")
        self.device_box.currentTextChanged.connect(lambda _: self._show_details())
        self.dtype_box.currentTextChanged.connect(lambda _: self._show_details())
        self.quant_box.currentIndexChanged.connect(lambda _: self._show_details())
        self.trust_box = QCheckBox("Allow this model's own Python code to run (trust_remote_code)")
        self.trust_box.setEnabled(False)
        self.load_button = QPushButton("Load model")
        self.load_button.setEnabled(False)
        self.load_button.clicked.connect(self.load_selected)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(lambda: self.load_job and self.load_job.cancel())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setObjectName("modelMessage")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        box = QGroupBox("Selected model")
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        form.addRow(self.details)
        form.addRow("Device", self.device_box)
        form.addRow("Precision", self.dtype_box)
        form.addRow("Quantisation", self.quant_box)
        form.addRow(self.trust_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress, 1)
        form.addRow(self.plan_label)
        form.addRow(buttons)
        form.addRow(self.message)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.tree, 1)
        layout.addWidget(box)
        # Once the event loop runs, not while the window is being built: the scan waits for
        # the ML stack's first import, which competes with building the window for the GIL.
        QTimer.singleShot(0, self.rescan)

    # -- discovery -------------------------------------------------------------------------

    def scan_folders(self) -> list[str]:
        folders = list(self.workspace.load_settings().get("model_folders", []))
        if self.workspace.models_dir.is_dir():
            folders.insert(0, str(self.workspace.models_dir))
        return folders

    def rescan(self) -> None:
        from desktop_app.ml.models.discovery import discover_models
        if self.scan_job is not None and self.scan_job.running:
            return
        folders = self.scan_folders()
        self.scan_label.setText("Scanning the Hugging Face cache and your folders…")
        self.scan_job = Job(lambda emit, stop: discover_models(folders), self, name="scan")
        self.scan_job.succeeded.connect(self._fill_tree)
        self.scan_job.failed.connect(self.scan_label.setText)
        self.scan_job.start()

    def _fill_tree(self, entries) -> None:
        from desktop_app.ml.models.discovery import ModelEntry

        selected = self.info.path if self.info else None
        self.tree.clear()
        # Models opened by folder (the dialog, --model, the last session's model) are listed
        # too: a loaded model missing from the list would look like an error.
        known = {Path(e.path).resolve() for e in entries}
        for path in self.opened_models():
            if Path(path).resolve() not in known and (Path(path) / "config.json").is_file():
                known.add(Path(path).resolve())
                entries = [*entries, ModelEntry(name=Path(path).name, path=path,
                                                source="opened")]
        for entry in entries:
            item = QTreeWidgetItem([entry.name, entry.source, entry.path])
            item.setData(0, Qt.ItemDataRole.UserRole, entry.path)
            self.tree.addTopLevelItem(item)
            if selected and Path(entry.path) == Path(selected):
                # Only the highlight comes back: the model shown stays as it is (its message,
                # e.g. "Imported ...", included), with no second inspection.
                self.tree.blockSignals(True)
                self.tree.setCurrentItem(item)
                self.tree.blockSignals(False)
        plural = "" if len(entries) == 1 else "s"
        self.scan_label.setText(f"{len(entries)} model{plural} found" if entries else
                                "No models found: open a model folder, or add a folder to scan.")

    def _tree_has(self, path: str) -> bool:
        for i in range(self.tree.topLevelItemCount()):
            item_path = self.tree.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole)
            if Path(item_path).resolve() == Path(path).resolve():
                return True
        return False

    def add_scan_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder that holds model folders")
        if folder:
            settings = self.workspace.load_settings()
            folders = settings.setdefault("model_folders", [])
            if folder not in folders:
                folders.append(folder)
                self.workspace.save_settings(settings)
            self.rescan()

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Model folder (config.json, weights, tokenizer)")
        if folder:
            self.select_path(folder)

    # -- importing a GGUF file ---------------------------------------------------------------

    def open_model_file_dialog(self) -> None:
        """Import a GGUF file as a model folder in the workspace (the page's one loading job:
        its progress bar and Cancel), then list and select it."""
        from desktop_app.ml.models.gguf_import import folder_name, free_folder_name
        if self.load_job is not None and self.load_job.running:
            return
        file, _ = QFileDialog.getOpenFileName(self, "Model file to import", "",
                                              "GGUF model files (*.gguf);;All files (*)")
        if not file:
            return
        name = folder_name(file)
        if (self.workspace.models_dir / name).exists():
            # The import never replaces a folder; most likely this file was imported before.
            name, ok = QInputDialog.getText(
                self, "Import model file", f"This workspace already has a model named {name}. "
                f"Import {Path(file).name} as:",
                text=free_folder_name(self.workspace.models_dir, name))
            if not ok or not name.strip():
                return
        self.import_file(file, name)

    def import_file(self, file: str, name: str | None = None) -> None:
        from desktop_app.ml.models.gguf_import import import_gguf
        models_dir = self.workspace.models_dir
        job = Job(lambda emit, stop: import_gguf(file, models_dir, name=name, emit=emit,
                                                 stop=stop), self, name="import-model")
        job.event.connect(self._on_load_event)
        job.succeeded.connect(self._on_imported)
        job.failed.connect(self._on_import_failed)
        self._begin_loading(job, f"Importing {Path(file).name}…",
                            cancelled="Import cancelled; nothing was kept.")

    def _on_imported(self, result) -> None:
        log.info("imported a model file as %s", result.path)
        self._load_ended("")
        self.select_path(result.path)  # shown as if picked in the list, ready to load
        if self.info is not None:
            self.message.setText(f"Imported {Path(result.path).name} into {result.path}.")
        # The scan keeps the selection. One already running may have looked before the folder
        # existed, so another follows it.
        if self.scan_job is not None and self.scan_job.running:
            self.scan_job.finished.connect(self.rescan)
        else:
            self.rescan()

    def _on_import_failed(self, message: str) -> None:
        log.warning("importing a model file failed: %s", message)
        self._load_ended("")
        self._error(message)

    # -- inspection ------------------------------------------------------------------------

    def select_path(self, path: str | None) -> None:
        """Inspect ``path`` (config and weight headers only) and show what it needs."""
        from desktop_app.ml.models.folder_check import ModelFolderError, inspect_model_folder
        if not path:
            return
        try:
            info = inspect_model_folder(path, trust_remote_code=self._trusted(path))
        except ModelFolderError as exc:
            self._show_inspection(path, None, str(exc))
        else:
            self._show_inspection(path, info, None)

    def open_at_start(self, path: str) -> None:
        """Inspect and load ``path`` in the background: at start-up nothing on the UI thread
        may wait for the ML stack's first import, or the window would stay black meanwhile."""
        from desktop_app.ml.models.folder_check import inspect_model_folder
        trusted = self._trusted(path)
        self._pending_path = path
        self.details.setText(f"<b>{Path(path).name}</b><br>{path}")
        job = Job(lambda emit, stop: inspect_model_folder(path, trust_remote_code=trusted),
                  self, name="inspect-model")
        job.succeeded.connect(lambda info: self._inspected_at_start(path, info))
        job.failed.connect(lambda message: self._inspect_failed_at_start(path, message))
        self._begin_loading(job, f"Loading {Path(path).name}…")
        self.load_started.emit(Path(path).name)

    def _inspected_at_start(self, path: str, info) -> None:
        self._load_ended("")
        self._show_inspection(path, info, None)
        if info.needs_remote_code and not self.trust_box.isChecked():
            return  # the person must allow its code first: the page says so
        self.load_path(path)

    def _inspect_failed_at_start(self, path: str, message: str) -> None:
        self._load_ended("")
        self._show_inspection(path, None, message)
        self.load_failed.emit(message)

    def _trusted(self, path: str) -> bool:
        return path in self.workspace.load_settings().get("trusted_models", [])

    def _show_inspection(self, path: str, info, error: str | None) -> None:
        self.info = info
        self._pending_path = path
        self.message.setText("")
        if info is None:
            needs_code = "remote code" in (error or "")
            self.trust_box.setEnabled(needs_code)
            self.trust_box.setChecked(False)
            self.details.setText(f"<b>{Path(path).name}</b><br>{path}")
            self._error(error or "")
            self.load_button.setEnabled(needs_code)
            return
        self.trust_box.setEnabled(info.needs_remote_code)
        self.trust_box.setChecked(self._trusted(path))
        self.load_button.setEnabled(True)
        self._show_details()

    def _show_details(self) -> None:
        from desktop_app.ml.models.device import pick_device
        if self.info is None:
            return
        info = self.info
        try:
            choice = pick_device(self.device_box.currentText(), self.dtype_box.currentText())
            need = f"Runs as {choice.label()}" + (
                f", base in {self.quant_box.currentData()}"
                if self.quant_box.currentData() != "none" else "")
            self.load_button.setEnabled(True)
        except ValueError as exc:
            need = f"<span style='color:#b00020'>{exc}</span>"
            self.load_button.setEnabled(False)
        self.details.setText(
            f"<b>{info.name}</b> — {info.architecture} ({info.model_type})<br>"
            f"{info.n_params / 1e6:,.1f} M parameters · weights stored as "
            f"{info.weights_dtype or 'unknown'} · chat template: "
            f"{'yes' if info.has_chat_template else 'no (raw prompt)'}<br>"
            f"{need}<br><span style='color:#666'>{info.path}</span>")
        self.plan_label.refresh()

    # -- loading ---------------------------------------------------------------------------

    def load_selected(self) -> None:
        path = getattr(self, "_pending_path", None)
        if not path or (self.load_job is not None and self.load_job.running):
            return
        trust = self.trust_box.isEnabled() and self.trust_box.isChecked()
        if trust:
            settings = self.workspace.load_settings()
            trusted = settings.setdefault("trusted_models", [])
            if path not in trusted:
                trusted.append(path)
                self.workspace.save_settings(settings)
        if not self.plan_label.confirm_start(self):
            return
        self.load_path(path, self.device_box.currentText(), self.dtype_box.currentText(), trust,
                       quantize=self.quant_box.currentData())

    def load_policy(self, base: str, adapter: str, versus_base: bool) -> None:
        """The next round: show ``base`` and load it with the tuned policy ``adapter``."""
        self.select_path(base)
        self.load_path(base, adapter=adapter, versus_base=versus_base,
                       quantize=self.quant_box.currentData())

    def _plan_job(self):
        """The memory plan of generating pairs with the selected model and these choices."""
        from desktop_app.core.config import SamplingConfig
        from desktop_app.ml.planning.plan import Job
        path = getattr(self, "_pending_path", None)
        if self.info is None or not path:
            return None
        return Job("generate", path, SamplingConfig(), device=self.device_box.currentText(),
                   dtype=self.dtype_box.currentText(), quantize=self.quant_box.currentData())

    def shutdown(self) -> None:
        """At application exit: loading and scanning hold no data, so they are asked to stop
        and left behind (a first import or a large checkpoint being read cannot stop at once);
        ``gui.app`` ends the process without waiting for them."""
        for job in (self.load_job, self.scan_job):
            if job is not None and job.running:
                job.cancel()

    def load_path(self, path: str, device: str = "auto", dtype: str = "auto",
                  trust_remote_code: bool = False, adapter: str | None = None,
                  versus_base: bool = False, quantize: str | None = None) -> None:
        """Load ``path`` in the background; with ``adapter`` (a tuned policy) merged in, or
        kept switchable when ``versus_base`` (pairs of one tuned and one base response).
        ``quantize`` None: the last choice made on this page (kept in the settings)."""
        from desktop_app.ml.models.loader import load_model
        settings = self.workspace.load_settings()
        if quantize is None:
            quantize = settings.get("quantize", "none")
        elif settings.get("quantize", "none") != quantize:
            settings["quantize"] = quantize
            self.workspace.save_settings(settings)

        def work(emit, stop):
            return load_model(path, device=device, dtype=dtype,
                              trust_remote_code=trust_remote_code, emit=emit, stop=stop,
                              adapter=adapter, versus_base=versus_base, quantize=quantize)

        job = Job(work, self, name="load-model")
        job.event.connect(self._on_load_event)
        job.succeeded.connect(self._on_loaded)
        job.failed.connect(self._on_load_failed)
        self._begin_loading(job, f"Loading {Path(path).name}"
                            + (f" with the adapter {adapter}…" if adapter else "…"))
        self.load_started.emit(Path(path).name)

    def _begin_loading(self, job: Job, text: str, cancelled: str = "Loading cancelled.") -> None:
        """Start ``job`` as the page's one loading job: Cancel and closing the window stop it."""
        job.cancelled.connect(lambda: self._load_ended(cancelled))
        self.load_job = job
        self.load_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.message.setStyleSheet("")
        self.message.setText(text)
        self.progress.setRange(0, 0)
        job.start()

    def _on_load_event(self, event) -> None:
        if isinstance(event, Progress):
            if event.total:
                self.progress.setRange(0, event.total)
                self.progress.setValue(event.done)
            self.progress.setFormat(event.message)
            self.message.setText(event.message)

    def opened_models(self) -> list[str]:
        settings = self.workspace.load_settings()
        opened = list(settings.get("opened_models", []))
        last = settings.get("last_model")
        return opened + ([last] if last and last not in opened else [])

    def _on_loaded(self, lm) -> None:
        log.info("model loaded: %s%s on %s", lm.path, f" + {lm.adapter}" if lm.adapter else "",
                 lm.label)
        self.loaded_path = lm.path
        settings = self.workspace.load_settings()
        settings["last_model"] = lm.path
        opened = [p for p in settings.get("opened_models", []) if p != lm.path]
        settings["opened_models"] = [lm.path, *opened][:20]
        self.workspace.save_settings(settings)
        if not self._tree_has(lm.path):
            self.rescan()
        self._load_ended(f"Loaded {lm.info.name}" + (f" + {lm.adapter}" if lm.adapter else "")
                         + f" on {lm.label}.")
        self.model_loaded.emit(lm)

    def _on_load_failed(self, message: str) -> None:
        log.warning("loading a model failed: %s", message)
        self._load_ended("")
        self._error(message)
        self.load_failed.emit(message)

    def _load_ended(self, text: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.cancel_button.setEnabled(False)
        self.load_button.setEnabled(True)
        self.message.setStyleSheet("")
        self.message.setText(text)

    def _error(self, text: str) -> None:
        self.message.setStyleSheet("color: #b00020;")
        self.message.setText(text)
