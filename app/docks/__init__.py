"""Docks of the main window. Each is a small model (plain Python state and logic, no widgets) and a
QDockWidget that shows it and reports what the user asked for through signals; the main window is the
presenter that connects them to the engine (`codec`)."""
